"""Consent and suppression end to end: who a transactional and a marketing journey reach.

A transactional journey reaches members whatever their consent; a marketing one only those who
granted it; an erased address gets nothing at all, transactional or not.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.orchestration import run_cycle
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.stages import erase_member, import_file
from nurture.storage import Member, Message, MessageStatus
from tests.pipeline_helpers import CONTENT, NOW

from .conftest import SALT

NOTICE = """\
id: account_notice
name: Account notice
category: care
transactional: true
trigger: {type: member_joined}
steps:
  - {id: notice, type: send, template: welcome, subject: Your account, next: done}
  - {id: done, type: exit}
"""

MEMBERS = """\
email,first_name,joined_at,consent_status
granted@example.org,Grace,2026-10-30T10:00:00+00:00,granted
unknown@example.org,Una,2026-10-30T10:00:00+00:00,unknown
denied@example.org,Dan,2026-10-30T10:00:00+00:00,denied
erased@example.org,Eve,2026-10-30T10:00:00+00:00,granted
"""


@pytest.fixture
def workspace_runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    workspace = tmp_path / "workspace"
    shutil.copytree(CONTENT, workspace, ignore=shutil.ignore_patterns("nurture-data"))
    (workspace / "journeys" / "account_notice.yaml").write_text(NOTICE, encoding="utf-8")
    settings = Settings(
        workspace=workspace,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
        suppression_salt=SALT,
    )
    with Runtime(settings) as runtime:
        yield runtime


def _sent(runtime: Runtime) -> dict[str, set[str]]:
    with runtime.session() as session:
        rows = session.execute(
            select(Member.email, Message.journey_key)
            .join(Member, Member.id == Message.member_id)
            .where(Message.status == MessageStatus.SENT)
        ).all()
    sent: dict[str, set[str]] = {}
    for email, journey in rows:
        sent.setdefault(journey, set()).add(email)
    return sent


def test_transactional_reaches_every_consent_and_erasure_beats_it(
    workspace_runtime: Runtime, tmp_path: Path
) -> None:
    runtime = workspace_runtime
    members = tmp_path / "members.csv"
    members.write_text(MEMBERS, encoding="utf-8")
    assert import_file(runtime, "members", members).stored == 4
    erase_member(runtime, "erased@example.org")
    assert import_file(runtime, "members", members).stored == 1  # back

    report = run_cycle(runtime, NOW)

    assert _sent(runtime) == {
        "account_notice": {"granted@example.org", "unknown@example.org", "denied@example.org"},
        "welcome": {"granted@example.org"},
    }
    assert report.delivery.suppressed == 0  # nobody was even enrolled who must not be mailed
    outbox = "".join(
        path.read_text(encoding="utf-8")
        for path in runtime.settings.resolved_outbox_dir.glob("*.eml")
    )
    assert "erased@example.org" not in outbox
