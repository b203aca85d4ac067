"""On the demo's whole outbox: no welcome to a long-standing member, no stale milestone, no late
birthday (the safe defaults of the shipped workspace, checked on every email it sends)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from nurture.cli import app
from nurture.journeys import load_journey
from nurture.journeys.models import MemberJoinedTrigger, MilestoneTrigger
from nurture.journeys.triggers import local_zone
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import Member
from tests.pipeline_helpers import CONTENT

runner = CliRunner()


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def test_the_demo_outbox_welcomes_newcomers_only_and_celebrates_nothing_stale(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    # At noon UTC: how many emails leave depends on the hour (members' quiet hours).
    started = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
    base = ["--workspace", str(CONTENT), "--data-dir", str(data)]
    result = runner.invoke(
        app,
        [*base, "demo", "--members", "150", "--no-prefect", "--now", "2026-03-02T12:00:00"],
        env={"NURTURE_EMBEDDING_MODEL": "hashing-64"},
    )
    assert result.exit_code == 0, result.output
    sent = {
        path: email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted((data / "outbox").glob("*.eml"))
    }
    assert sent, result.output
    welcome = load_journey(CONTENT / "journeys" / "welcome.yaml").trigger
    milestone = load_journey(CONTENT / "journeys" / "milestone.yaml").trigger
    assert isinstance(welcome, MemberJoinedTrigger) and welcome.within_days == 14
    assert isinstance(milestone, MilestoneTrigger)
    settings = Settings(workspace=CONTENT, data_dir=data)
    with Runtime(settings) as runtime, runtime.session() as session:
        members = {m.email: m for m in session.scalars(select(Member))}
        joins = sorted(_aware(m.joined_at) for m in members.values())
    journeys: dict[str, int] = {}
    for path, message in sent.items():
        journey = str(message["X-Nurture-Journey"])
        journeys[journey] = journeys.get(journey, 0) + 1
        member = members[str(message["To"]).split("<")[-1].rstrip(">")]
        if journey == "welcome":
            recent = started - dt.timedelta(days=welcome.within_days)
            assert _aware(member.joined_at) >= recent - dt.timedelta(days=1), path.name
        elif journey == "milestone":
            crossed = [joins[t - 1] for t in milestone.thresholds if t <= len(joins)]
            assert crossed and max(crossed) >= started - dt.timedelta(
                days=milestone.within_days + 1
            ), path.name
        elif journey == "birthday":  # on the member's own day (29 February: the 28th)
            assert member.birthday is not None
            local = message["Date"].datetime.astimezone(local_zone(member.time_zone))
            day = (member.birthday.month, member.birthday.day)
            assert (local.month, local.day) in (day, (2, 28) if day == (2, 29) else day)
    assert 0 < journeys.get("welcome", 0) < len(members) / 4, journeys  # newcomers only
