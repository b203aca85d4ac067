"""Builders shared by the mail backend tests: an outgoing email, a free local port."""

from __future__ import annotations

import socket
from typing import Any

from nurture.delivery import OutgoingEmail

HOST = "127.0.0.1"


def outgoing_email(
    to_email: str, unsubscribe: str, *, to_name: str = "Zoé Lefèvre", **overrides: Any
) -> OutgoingEmail:
    """A realistic outgoing email (French name, HTML and text, one-click headers)."""
    values: dict[str, Any] = {
        "message_id": 42,
        "to_email": to_email,
        "to_name": to_name,
        "from_email": "community@example.org",
        "from_name": "The community team",
        "subject": "Welcome, Zoé!",
        "html": "<p>Hello <b>Zoé</b></p>",
        "text": "Hello Zoé\n",
        "headers": {
            "List-Unsubscribe": unsubscribe,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "journey_key": "welcome",
        "step_id": "hello",
    }
    values.update(overrides)
    return OutgoingEmail(**values)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]
