import datetime as dt
from pathlib import Path

import pytest

from nurture.errors import ImportRecordError, QuestionnaireValidationError
from nurture.workspace import Questionnaire, load_questionnaire

ROOT = Path(__file__).resolve().parents[2]
QUESTIONNAIRE = ROOT / "content" / "questionnaire.yaml"
INVALID = Path(__file__).parent / "invalid" / "questionnaire"

# file -> (line, field or None, words the message must contain)
INVALID_CASES = {
    "broken-yaml.yaml": (5, None, "invalid YAML"),
    "typo-field.yaml": (11, "questions.1.requird", "did you mean 'required'"),
    "wrong-kind.yaml": (4, "questions.0.kind", "checkboxes"),
    "duplicate-question-key.yaml": (11, "questions.2.key", "duplicate question key 'role'"),
    "options-on-free-text.yaml": (6, "questions.0.options", "takes no options"),
    "choice-without-options.yaml": (9, "questions.1.options", "at least one option"),
    "scale-without-bounds.yaml": (3, "questions.0.max", "needs 'max'"),
    "missing-label.yaml": (8, "questions.0.options.0.labels.fr", "missing required field 'fr'"),
}

EXPECTED_OPTIONS = {
    "role": [
        "founder",
        "community_manager",
        "marketer",
        "customer_success",
        "developer_advocate",
        "internal_comms",
    ],
    "community_kind": ["customer", "partner", "employee", "open_source", "association"],
    "goals": [
        "grow_members",
        "improve_engagement",
        "onboard_newcomers",
        "measure_roi",
        "run_events",
        "create_content",
        "reduce_churn",
        "build_ambassadors",
    ],
    "formats": ["article", "webinar", "event", "masterclass", "discussion"],
    "experience": [],
    "expectations": [],
}


@pytest.fixture(scope="module")
def questionnaire() -> Questionnaire:
    return load_questionnaire(QUESTIONNAIRE)


def test_real_questionnaire_has_the_documented_questions(questionnaire):
    assert {q.key: q.option_keys for q in questionnaire.questions} == EXPECTED_OPTIONS
    kinds = {q.key: q.kind for q in questionnaire.questions}
    assert kinds == {
        "role": "single_choice",
        "community_kind": "single_choice",
        "goals": "multiple_choice",
        "formats": "multiple_choice",
        "experience": "scale",
        "expectations": "free_text",
    }
    experience = questionnaire.question("experience")
    assert (experience.min, experience.max) == (1, 5)
    for question in questionnaire.questions:
        assert question.labels.en and question.labels.fr
    assert questionnaire.profile_questions == questionnaire.questions


def test_every_invalid_fixture_has_a_case():
    assert {path.name for path in INVALID.glob("*.yaml")} == set(INVALID_CASES)


@pytest.mark.parametrize("name", sorted(INVALID_CASES))
def test_invalid_file_names_file_line_and_field(name):
    with pytest.raises(QuestionnaireValidationError) as caught:
        load_questionnaire(INVALID / name)
    line, field, words = INVALID_CASES[name]
    matching = [
        problem
        for problem in caught.value.problems
        if problem.line == line and problem.field == field and words in problem.message
    ]
    assert matching, caught.value.problems
    assert f"{name}:{line}" in str(caught.value)


def test_every_problem_is_listed(tmp_path):
    path = tmp_path / "questionnaire.yaml"
    path.write_text(
        "version: 1\n"
        "questions:\n"
        "  - key: role\n"
        "    kind: single_choice\n"
        "    labels: {en: Role, fr: Rôle}\n"
        "  - key: role\n"
        "    kind: free_text\n"
        "    labls: {en: Role, fr: Rôle}\n",
        encoding="utf-8",
    )
    with pytest.raises(QuestionnaireValidationError) as caught:
        load_questionnaire(path)
    found = {(problem.line, problem.field) for problem in caught.value.problems}
    assert (3, "questions.0.options") in found
    assert (8, "questions.1.labls") in found
    assert (6, "questions.1.key") in found


@pytest.mark.parametrize("text", ["", "- just\n- a list\n"], ids=["empty", "list"])
def test_file_that_is_not_a_mapping(tmp_path, text):
    path = tmp_path / "questionnaire.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(QuestionnaireValidationError, match="expected a mapping"):
        load_questionnaire(path)


def test_missing_file(tmp_path):
    with pytest.raises(QuestionnaireValidationError, match="cannot read"):
        load_questionnaire(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("role", "founder", "founder"),
        ("role", " Founder ", "founder"),
        ("goals", "grow_members|measure_roi|grow_members", ["grow_members", "measure_roi"]),
        ("goals", ["run_events"], ["run_events"]),
        ("goals", "", []),
        ("experience", 3, 3),
        ("experience", "5", 5),
        ("experience", 2.0, 2),
        ("expectations", "  Learn from peers ", "Learn from peers"),
    ],
)
def test_validate_answer_normalises(questionnaire, key, value, expected):
    assert questionnaire.validate_answer(key, value) == expected


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("favourite_colour", "blue", "unknown question"),
        ("role", "astronaut", "not allowed"),
        ("role", ["founder"], "expected one option key"),
        ("goals", "grow_members|fly", "'fly' is not allowed"),
        ("goals", 3, "expected a list"),
        ("experience", 6, "from 1 to 5"),
        ("experience", "a lot", "whole number"),
        ("experience", True, "whole number"),
        ("experience", 2.5, "whole number"),
        ("expectations", 42, "expected text"),
        ("role", None, "empty"),
    ],
)
def test_validate_answer_refuses(questionnaire, key, value, words):
    with pytest.raises(ImportRecordError, match=words) as caught:
        questionnaire.validate_answer(key, value)
    assert caught.value.field == key


def test_date_answers():
    questionnaire = Questionnaire.model_validate(
        {
            "version": 1,
            "questions": [
                {"key": "joined", "kind": "date", "labels": {"en": "When?", "fr": "Quand ?"}}
            ],
        }
    )
    assert questionnaire.validate_answer("joined", "2026-03-01") == "2026-03-01"
    assert questionnaire.validate_answer("joined", dt.date(2026, 3, 1)) == "2026-03-01"
    with pytest.raises(ImportRecordError, match="YYYY-MM-DD"):
        questionnaire.validate_answer("joined", "March")


def test_option_label(questionnaire):
    assert questionnaire.option_label("role", "founder", "fr") == "Fondateur ou dirigeant"
    assert questionnaire.option_label("role", "founder", "en") == "Founder or executive"
    assert questionnaire.option_label("role", "founder", "de") == "Founder or executive"
    with pytest.raises(KeyError, match="no option"):
        questionnaire.option_label("role", "pilot", "en")
    with pytest.raises(KeyError, match="unknown question"):
        questionnaire.question("nope")


def test_models_check_consistency_when_built_in_code():
    with pytest.raises(ValueError, match="takes no options"):
        Questionnaire.model_validate(
            {
                "version": 1,
                "questions": [
                    {
                        "key": "notes",
                        "kind": "free_text",
                        "labels": {"en": "Notes", "fr": "Notes"},
                        "options": [{"key": "a", "labels": {"en": "A", "fr": "A"}}],
                    }
                ],
            }
        )
