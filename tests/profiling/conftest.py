"""A tiny stand-in questionnaire (duck-typed like nurture.workspace.Questionnaire)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass
class Option:
    key: str
    labels: dict[str, str]


@dataclass
class Question:
    key: str
    kind: str
    options: list[Option] = field(default_factory=list)
    profile: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    min: int | None = None
    max: int | None = None


@dataclass
class Questionnaire:
    questions: list[Question]


def options(*keys: str) -> list[Option]:
    return [Option(key, {"en": key.replace("_", " ").title(), "fr": key}) for key in keys]


@pytest.fixture
def questionnaire() -> Questionnaire:
    return Questionnaire(
        [
            Question("role", "single_choice", options("founder", "marketer", "developer")),
            Question(
                "goals", "multiple_choice", options("grow_members", "run_events", "measure_roi")
            ),
            Question("experience", "scale", min=1, max=5),
            Question("expectations", "free_text"),
            Question("birthday", "date"),
            Question("secret", "single_choice", options("yes", "no"), profile=False),
        ]
    )
