"""Stand-ins for marketer files, duck-typed like their nurture.workspace models."""

from __future__ import annotations

from dataclasses import dataclass, field


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
