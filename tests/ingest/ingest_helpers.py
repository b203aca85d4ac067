"""Helpers for the import tests: a fake questionnaire, writing files, reading rejects."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.errors import ImportRecordError
from nurture.storage.models import ActivityEvent, Answer, Member

QUESTIONS: dict[str, tuple[str, frozenset[str]]] = {
    "role": (
        "single_choice",
        frozenset(
            {
                "founder",
                "community_manager",
                "marketer",
                "customer_success",
                "developer_advocate",
                "internal_comms",
            }
        ),
    ),
    "community_kind": (
        "single_choice",
        frozenset({"customer", "partner", "employee", "open_source", "association"}),
    ),
    "goals": (
        "multiple_choice",
        frozenset(
            {
                "grow_members",
                "improve_engagement",
                "onboard_newcomers",
                "measure_roi",
                "run_events",
                "create_content",
                "reduce_churn",
                "build_ambassadors",
            }
        ),
    ),
    "formats": (
        "multiple_choice",
        frozenset({"article", "webinar", "event", "masterclass", "discussion"}),
    ),
    "experience": ("scale", frozenset()),
    "expectations": ("free_text", frozenset()),
}


class FakeQuestionnaire:
    """Checks answers like the real questionnaire: strict types, options of docs/architecture.md."""

    def question(self, key: str) -> tuple[str, frozenset[str]]:
        if key not in QUESTIONS:
            raise KeyError(f"unknown question {key!r}; expected one of: {', '.join(QUESTIONS)}")
        return QUESTIONS[key]

    def validate_answer(self, key: str, value: Any) -> Any:
        if key not in QUESTIONS:
            raise ImportRecordError(f"unknown question {key!r}", field=key)
        kind, options = QUESTIONS[key]
        if kind == "single_choice":
            if not isinstance(value, str) or value not in options:
                raise ImportRecordError(f"expected one of {sorted(options)}, found {value!r}")
        elif kind == "multiple_choice":
            if not isinstance(value, list) or not value or not set(value) <= options:
                raise ImportRecordError(f"expected a list of {sorted(options)}, found {value!r}")
        elif kind == "scale":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
                raise ImportRecordError(f"expected an integer 1..5, found {value!r}")
        elif not isinstance(value, str) or not value.strip():
            raise ImportRecordError(f"expected text, found {value!r}")
        return value


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def read_rejects(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def snapshot(session: Session) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Every member, answer and event, by natural keys (no ids, no row timestamps)."""
    session.expire_all()
    members = {m.id: m for m in session.scalars(select(Member))}
    return (
        sorted(
            (
                m.external_id or "",
                m.email,
                m.first_name,
                m.last_name,
                m.language,
                m.time_zone,
                m.birthday,
                m.joined_at,
                m.consent_status,
                m.consent_source or "",
                json.dumps(m.attributes, sort_keys=True),
            )
            for m in members.values()
        ),
        sorted(
            (members[a.member_id].email, a.question_key, json.dumps(a.value), a.answered_at)
            for a in session.scalars(select(Answer))
        ),
        sorted(
            (
                members[e.member_id].email,
                e.type,
                e.occurred_at,
                e.content_key or "",
                json.dumps(e.properties, sort_keys=True),
                e.idempotency_key,
            )
            for e in session.scalars(select(ActivityEvent))
        ),
    )
