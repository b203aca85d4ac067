"""Erasing a member's emails from the local outbox."""

from __future__ import annotations

from pathlib import Path

from nurture.delivery import OutboxMailer, OutgoingEmail
from nurture.rights import erase_from_outbox


def _send(outbox: Path, message_id: int, to_email: str, to_name: str) -> None:
    OutboxMailer(outbox).send(
        OutgoingEmail(
            message_id=message_id,
            to_email=to_email,
            to_name=to_name,
            from_email="community@example.org",
            from_name="The team",
            subject="Welcome",
            html="<p>Hi</p>",
            text="Hi",
            journey_key="welcome",
            step_id="send_welcome",
        )
    )


def test_erase_from_outbox_removes_only_that_addresss_emails(tmp_path: Path) -> None:
    _send(tmp_path, 1, "zephyrine.q@example.org", "Zéphyrine, Quillfeather")
    _send(tmp_path, 2, "ada@example.org", "Ada Lovelace")
    _send(tmp_path, 3, "Zephyrine.Q@Example.org", "")

    assert erase_from_outbox(tmp_path, "ZEPHYRINE.Q@example.org") == 2

    assert [path.name for path in tmp_path.glob("*.eml")] == ["000002-welcome-send_welcome.eml"]
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "ada@example.org" in index
    assert "zephyrine" not in index.lower()


def test_erase_from_a_missing_or_empty_outbox(tmp_path: Path) -> None:
    assert erase_from_outbox(tmp_path / "missing", "a@example.org") == 0
    assert erase_from_outbox(tmp_path, "a@example.org") == 0
    assert not (tmp_path / "index.html").exists()
