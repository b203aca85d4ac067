"""A synthetic community of four clearly separated groups, with a stand-in questionnaire."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy.orm import Session

from nurture.storage.models import ActivityEvent, Answer, Member
from tests.stand_ins import Option, Question, Questionnaire

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


ROLES = {
    "founder": "Founder or executive",
    "internal_comms": "Internal communications",
    "event_organiser": "Event organiser",
    "maintainer": "Open-source maintainer",
}
GOALS = {
    "founder": ("measure_roi", "grow_members"),
    "internal_comms": ("improve_engagement", "onboard_newcomers"),
    "event_organiser": ("run_events", "create_content"),
    "maintainer": ("build_ambassadors", "reduce_churn"),
}
WORDS = {
    "founder": "b2b revenue roi customers pipeline sales growth investors",
    "internal_comms": "employees intranet culture collaborateurs newsletter rh values",
    "event_organiser": "meetups conference speakers venue tickets agenda workshops",
    "maintainer": "github contributors maintainers pull requests issues documentation",
}
GROUPS = list(ROLES)


def _label(key: str) -> dict[str, str]:
    return {"en": key.replace("_", " ").capitalize(), "fr": key}


@pytest.fixture
def questionnaire() -> Questionnaire:
    goals = [goal for pair in GOALS.values() for goal in pair]
    return Questionnaire(
        [
            Question(
                "role",
                "single_choice",
                [Option(key, {"en": label, "fr": label}) for key, label in ROLES.items()],
            ),
            Question("goals", "multiple_choice", [Option(g, _label(g)) for g in goals]),
            Question("experience", "scale", min=1, max=5),
            Question("expectations", "free_text"),
        ]
    )


@pytest.fixture
def population(session: Session) -> dict[int, int]:
    """Creates 4 groups x 30 members; returns {member id: true group index}."""
    rng = random.Random(7)
    truth: dict[int, int] = {}
    for index in range(120):
        group = index % 4
        name = GROUPS[group]
        member = Member(
            email=f"m{index}@example.org",
            joined_at=NOW - dt.timedelta(days=rng.randint(1, 400)),
        )
        session.add(member)
        session.flush()
        truth[member.id] = group
        goals = [g for g in GOALS[name] if rng.random() < 0.8] or [GOALS[name][0]]
        words = rng.sample(WORDS[name].split(), 4)
        text = f"I expect {' and '.join(words)} from the community, et des échanges"
        answers = {
            "role": name,
            "goals": goals,
            "experience": rng.randint(1, 5),
            "expectations": text,
        }
        for key, value in answers.items():
            session.add(Answer(member_id=member.id, question_key=key, value=value))
        for n in range(rng.randint(0, 6)):
            session.add(
                ActivityEvent(
                    member_id=member.id,
                    type=rng.choice(["post", "comment", "content_view", "email_open"]),
                    occurred_at=NOW - dt.timedelta(days=rng.uniform(0, 120)),
                    idempotency_key=f"{member.id}-{n}",
                )
            )
    session.commit()
    return truth
