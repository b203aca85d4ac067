"""A tiny stand-in questionnaire (duck-typed like nurture.workspace.Questionnaire)."""

from __future__ import annotations

import pytest

from tests.stand_ins import Question, Questionnaire, options


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
