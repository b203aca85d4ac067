"""`nurture deliveries`: list the unknown messages, resolve them, recover interrupted deliveries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from nurture.cli import app
from nurture.storage import open_session
from nurture.storage.models import Message, MessageStatus, utcnow
from tests.operations.conftest import Rows

runner = CliRunner()


@pytest.fixture
def messages(engine: Engine) -> dict[str, int]:
    """An unknown message to ada (handed to SMTP), another unknown, a sent one, a stuck claim."""
    claimed = utcnow() - dt.timedelta(hours=2)
    with open_session(engine) as session:
        rows = Rows(session)
        journey = rows.journey("welcome", ["hello"])
        ids = {}
        for name, email, status in (
            ("ada", "ada@example.org", MessageStatus.UNKNOWN),
            ("bob", "bob@example.org", MessageStatus.UNKNOWN),
            ("sent", "cy@example.org", MessageStatus.SENT),
            ("stuck", "dee@example.org", MessageStatus.SENDING),
        ):
            enrollment = rows.enrollment(journey, rows.member(email=email))
            ids[name] = rows.message(
                enrollment,
                "hello",
                status,
                claimed_at=claimed,
                handed_over_at=claimed if status == MessageStatus.UNKNOWN else None,
                backend="smtp" if status == MessageStatus.UNKNOWN else None,
                error="claimed, handed to smtp, no provider event"
                if status == MessageStatus.UNKNOWN
                else None,
            ).id
        session.commit()
    return ids


def _nurture(database_url: str, tmp_path: Path, *args: str):
    env = {"NURTURE_DATABASE_URL": database_url, "NURTURE_DATA_DIR": str(tmp_path)}
    return runner.invoke(app, list(args), env=env)


def _statuses(engine: Engine) -> dict[int, MessageStatus]:
    with open_session(engine) as session:
        return dict(session.execute(select(Message.id, Message.status)).tuples().all())


@pytest.mark.parametrize(
    "command", [["deliveries"], ["deliveries", "unknown"], ["deliveries", "resolve"]]
)
def test_help_says_what_each_command_does(command):
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "unknown" in result.output


def test_unknown_lists_what_is_known(engine, database_url, messages, tmp_path):
    result = _nurture(database_url, tmp_path, "deliveries", "unknown")
    assert result.exit_code == 0, result.output
    assert "2 unknown messages" in result.output
    assert "ada@example.org" in result.output
    assert "bob@example.org" in result.output
    assert "cy@example.org" not in result.output  # sent: settled
    assert "smtp" in result.output
    assert "nurture deliveries resolve --sent" in result.output
    limited = _nurture(database_url, tmp_path, "deliveries", "unknown", "--limit", "1")
    assert "1 unknown messages, oldest claim first (more not shown" in limited.output


def test_resolve_settles_each_as_told_and_names_the_others(
    engine, database_url, messages, tmp_path
):
    sent = _nurture(
        database_url, tmp_path, "deliveries", "resolve", "--sent", str(messages["ada"]), "999"
    )
    assert sent.exit_code == 0, sent.output
    assert f"1 messages marked sent: {messages['ada']}" in sent.output
    assert "left alone, not 'unknown' (or not found): 999" in sent.output
    requeued = _nurture(
        database_url,
        tmp_path,
        "deliveries",
        "resolve",
        str(messages["bob"]),
        str(messages["ada"]),
        "--requeue",
    )
    assert requeued.exit_code == 0, requeued.output
    assert f"1 messages re-queued (sent again by the next deliver run): {messages['bob']}" in (
        requeued.output
    )
    assert _statuses(engine) == {
        messages["ada"]: MessageStatus.SENT,
        messages["bob"]: MessageStatus.QUEUED,
        messages["sent"]: MessageStatus.SENT,
        messages["stuck"]: MessageStatus.SENDING,
    }
    assert "no unknown messages" in _nurture(database_url, tmp_path, "deliveries", "unknown").output


@pytest.mark.parametrize("flags", [[], ["--sent", "--requeue"]])
def test_resolve_needs_exactly_one_decision(engine, database_url, messages, tmp_path, flags):
    result = _nurture(database_url, tmp_path, "deliveries", "resolve", str(messages["ada"]), *flags)
    assert result.exit_code == 2
    assert "exactly one of --sent and --requeue" in result.output
    assert _statuses(engine)[messages["ada"]] is MessageStatus.UNKNOWN


def test_recover_requeues_a_claim_never_handed_over(engine, database_url, messages, tmp_path):
    result = _nurture(database_url, tmp_path, "deliveries", "recover")
    assert result.exit_code == 0, result.output
    assert (
        "recovered deliveries: 0 settled as sent, 1 re-queued, 0 unknown, 0 failed" in result.output
    )
    assert _statuses(engine)[messages["stuck"]] is MessageStatus.QUEUED
