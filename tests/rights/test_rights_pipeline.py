"""End to end on the stages: export, erase, re-import; the erased address is never mailed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import func, select

from nurture.orchestration import run_cycle
from nurture.runtime import Runtime
from nurture.stages import erase_member, export_member, import_file, run_journeys
from nurture.storage import Member, Message, ProviderEvent
from tests.pipeline_helpers import NOW, seed_demo

from .conftest import EMAIL, FIRST_NAME, FREE_TEXT, LAST_NAME, find_mentions

N_OTHERS = 20


def _write_member_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    members = folder / "zephyrine.csv"
    members.write_text(
        "external_id,email,first_name,last_name,language,joined_at,consent_status,"
        "consent_source,city\n"
        f"crm-42,{EMAIL},{FIRST_NAME},{LAST_NAME},en,2026-10-30T10:00:00+00:00,granted,"
        "signup_form,Lyon\n",
        encoding="utf-8",
    )
    answers = folder / "zephyrine-answers.jsonl"
    answers.write_text(
        "\n".join(
            json.dumps({"member": "crm-42", "question": question, "value": value})
            for question, value in [
                ("role", "founder"),
                ("community_kind", "customer"),
                ("goals", ["run_events", "grow_members"]),
                ("expectations", FREE_TEXT),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    activity = folder / "zephyrine-activity.jsonl"
    activity.write_text(
        json.dumps(
            {
                "member": EMAIL,
                "type": "post",
                "occurred_at": "2026-10-31T10:00:00+00:00",
                "properties": {"title": f"{FIRST_NAME} {LAST_NAME} says hello"},
            }
        )
        + "\n",
        encoding="utf-8",
    )
    return {"members": members, "answers": answers, "activity": activity}


def _import(runtime: Runtime, files: dict[str, Path]) -> None:
    for kind, path in files.items():
        summary = import_file(runtime, kind, path)  # type: ignore[arg-type]
        assert summary.refused == 0, summary.problems


def _outbox_mentions(runtime: Runtime, *needles: str) -> list[str]:
    folder = runtime.settings.resolved_outbox_dir
    return [
        path.name
        for path in [*folder.glob("*.eml"), folder / "index.html"]
        if path.exists()
        and any(needle.lower() in path.read_text(encoding="utf-8").lower() for needle in needles)
    ]


def _messages_to(runtime: Runtime, email: str) -> int:
    with runtime.session() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Message)
                .join(Member, Member.id == Message.member_id)
                .where(Member.email == email)
            )
            or 0
        )


def test_erased_address_is_never_mailed_again_even_after_a_reimport(
    runtime: Runtime, tmp_path: Path
) -> None:
    seed_demo(runtime, N_OTHERS)
    files = _write_member_files(tmp_path / "crm")
    _import(runtime, files)
    first = run_cycle(runtime, NOW)
    assert first.delivery.sent == N_OTHERS + 1
    assert _outbox_mentions(runtime, EMAIL)
    with runtime.session() as session:
        message_id = session.scalar(
            select(Message.id)
            .join(Member, Member.id == Message.member_id)
            .where(Member.email == EMAIL)
        )
        session.add(
            ProviderEvent(
                provider="sendgrid",
                event_id="ev-1",
                message_id=message_id,
                type="open",
                occurred_at=NOW,
                payload={"email": EMAIL},
            )
        )

    exported = export_member(runtime, EMAIL)
    for section in (
        "members",
        "answers",
        "activity",
        "profiles",
        "segment_memberships",
        "recommendations",
        "enrollments",
        "messages",
        "provider_events",
    ):
        assert exported[section], section
    assert exported["members"][0]["attributes"] == {"city": "Lyon"}

    summary = erase_member(runtime, EMAIL)

    assert summary.members == 1 and summary.newly_suppressed
    assert summary.deleted["outbox_files"] == 1
    assert find_mentions(runtime.engine, [EMAIL, FIRST_NAME, LAST_NAME]) == []
    # Their own emails are gone from the outbox. (Emails already sent to others may quote a
    # segment label made of words the member wrote, their name included: those went out.)
    assert _outbox_mentions(runtime, EMAIL) == []
    assert len(list(runtime.settings.resolved_outbox_dir.glob("*.eml"))) == N_OTHERS

    # The CRM still has the address: the next import brings the member back.
    _import(runtime, files)
    with runtime.session() as session:
        assert session.scalar(select(func.count()).select_from(Member)) == N_OTHERS + 1
    later = NOW + dt.timedelta(days=3, minutes=1)
    report = run_cycle(runtime, later)

    assert report.delivery.sent == N_OTHERS  # everyone else gets the follow-up
    assert report.journeys is not None and report.journeys.enrolled == 0
    assert _messages_to(runtime, EMAIL) == 0
    assert _outbox_mentions(runtime, EMAIL) == []

    again = erase_member(runtime, EMAIL)
    assert again.members == 1 and not again.newly_suppressed
    assert erase_member(runtime, EMAIL).held_nothing


def test_enrolment_and_erasure_use_the_same_salt(runtime: Runtime, tmp_path: Path) -> None:
    files = _write_member_files(tmp_path / "crm")
    _import(runtime, files)
    erase_member(runtime, EMAIL)
    _import(runtime, {"members": files["members"]})

    assert run_journeys(runtime, NOW).enrolled == 0
    # Under another salt the hash no longer matches: why the salt must never change.
    other_salt = runtime.settings.model_copy(update={"suppression_salt": SecretStr("another")})
    with Runtime(other_salt) as other:
        assert run_journeys(other, NOW).enrolled == 1
