"""Logs a person can read: summaries as sentences with numbers, no reprs, no secrets, no addresses.

A whole cycle runs in this process on the demo workspace (every journey, a refused import row,
a rerun), with every logger at DEBUG; then each captured line is checked.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from nurture.delivery.mailers import DeliveryResult, OutgoingEmail
from nurture.errors import DeliveryError, PermanentDeliveryError
from nurture.orchestration import run_cycle
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.stages import import_file
from tests.pipeline_helpers import CONTENT, NOW, seed_demo

UNSUBSCRIBE_SECRET = "unsubscribe-secret-Zq81"
SUPPRESSION_SALT = "suppression-salt-Kx42"
ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
REPR = re.compile(r"\b[A-Z]\w*\((\w+=|\))|<[\w.]+ object at 0x")
"""``DeliverySummary(sent=...)``, ``Summary()``, ``<nurture.x.Y object at 0x...>``."""


class MoodyMailer:
    """Sends one email in three, refuses one for good, fails one for now: naming the address."""

    def send(self, email: OutgoingEmail) -> DeliveryResult:
        """Answer as a provider quoting the recipient in its errors would."""
        if email.message_id % 3 == 1:
            raise PermanentDeliveryError(f"550 5.1.1 <{email.to_email}>: mailbox unavailable")
        if email.message_id % 3 == 2:
            raise DeliveryError(f"421 too many messages to {email.to_email}, try later")
        return DeliveryResult(provider_message_id=f"id-{email.message_id}", backend="moody")


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        workspace=CONTENT,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
        chunk_size=16,
        unsubscribe_secret=UNSUBSCRIBE_SECRET,
        suppression_salt=SUPPRESSION_SALT,
    )
    with Runtime(settings) as runtime:
        yield runtime


def test_a_cycle_logs_sentences_without_secrets_or_addresses(
    runtime: Runtime, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    seed_demo(runtime, 40)
    refused = tmp_path / "members-bad.csv"
    refused.write_text(
        "email,first_name,language\nnot-an-address,Ada,en\nbob@example.org,Bob,xx\n",
        encoding="utf-8",
    )
    import_file(runtime, "members", refused)

    run_cycle(runtime, NOW)
    runtime.__dict__["mailer"] = MoodyMailer()  # the next runs meet a provider's errors
    run_cycle(runtime, NOW + dt.timedelta(days=3))
    run_cycle(runtime, NOW + dt.timedelta(days=3, hours=1))

    lines = [record.getMessage() for record in caplog.records]
    assert lines, "the cycle logged nothing"
    unreadable = [
        line
        for line in lines
        if ADDRESS.search(line)
        or REPR.search(line)
        or UNSUBSCRIBE_SECRET in line
        or SUPPRESSION_SALT in line
    ]
    assert unreadable == []
    text = "\n".join(lines)
    assert re.search(r"delivered \d+: \d+ sent, \d+ suppressed", text), text
    assert re.search(r"profiled \d+ members", text), text
