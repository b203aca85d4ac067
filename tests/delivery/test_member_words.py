"""The member's own words in templates: answers with labels in the email's language."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from nurture.delivery.member_words import answer_views
from nurture.delivery.rendering import TemplateRenderer
from nurture.errors import TemplateError
from nurture.workspace import load_questionnaire, validate_templates

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "content" / "templates"
ANSWERS = {
    "role": "founder",
    "goals": ["grow_members", "run_events"],
    "experience": 4,
    "expectations": "Peers who have scaled a customer community before",
}


@pytest.fixture(scope="module")
def questionnaire():
    return load_questionnaire(ROOT / "content" / "questionnaire.yaml")


def test_answers_read_with_labels_in_the_emails_language(questionnaire) -> None:
    views = answer_views(ANSWERS, questionnaire, "fr")
    assert set(views) == {question.key for question in questionnaire.questions}
    goals = views["goals"]
    assert goals["answered"] and goals["value"] == ["grow_members", "run_events"]
    assert goals["labels"] == ["Faire grandir le nombre de membres", "Organiser des événements"]
    assert goals["text"] == "Faire grandir le nombre de membres et Organiser des événements"
    assert goals["phrase"] == "faire grandir le nombre de membres et organiser des événements"
    assert goals["question"].startswith("Que voulez-vous accomplir")
    assert answer_views(ANSWERS, questionnaire, "en")["goals"]["text"] == (
        "Grow the number of members and Run events"
    )
    assert views["role"]["text"] == "Fondateur ou dirigeant"
    assert views["experience"]["text"] == "4"
    assert views["expectations"]["text"] == ANSWERS["expectations"]
    assert views["expectations"]["phrase"] == ANSWERS["expectations"]  # the member's own case
    roi = answer_views({"goals": ["measure_roi"]}, questionnaire, "en")["goals"]
    assert roi["phrase"] == "measure the community's ROI"
    assert views["formats"] == {
        "answered": False,
        "question": "Quels formats préférez-vous ?",
        "value": None,
        "labels": [],
        "text": "",
        "phrase": "",
    }


def test_without_a_questionnaire_answers_read_as_stored() -> None:
    views = answer_views({"goals": ["run_events"]}, None, "en")
    assert views["goals"]["text"] == "run_events"
    assert views["anything"]["answered"] is False


def _welcome(questionnaire, language: str, profile: dict) -> str:
    renderer = TemplateRenderer(
        TEMPLATES,
        community_name="Builders",
        public_base_url="https://example.org",
        unsubscribe_secret="secret",
        questionnaire=questionnaire,
    )
    message = SimpleNamespace(
        id=1,
        template="welcome",
        subject="Hi",
        context={"items": [], "slots": {}, "questionnaire_answered": True, "profile": profile},
        journey_key="welcome",
        step_id="send_welcome",
    )
    member = SimpleNamespace(
        id=1,
        email="a@example.org",
        first_name="Ana",
        last_name="",
        language=language,
        time_zone="Europe/Paris",
    )
    return renderer.render_message(message, member).text


def test_the_welcome_quotes_what_the_member_said(questionnaire) -> None:
    profile = {"answers": ANSWERS, "attributes": {}, "lifecycle": "new", "segments": []}
    english = _welcome(questionnaire, "en", profile)
    assert f"“{ANSWERS['expectations']}.”" in english
    assert "achieve in the next six months: grow the number of members and run events." in english
    french = _welcome(questionnaire, "fr", profile)
    assert f"« {ANSWERS['expectations']} »" in french
    assert "mois : faire grandir le nombre de membres et organiser des événements." in french
    only_goals = {**profile, "answers": {"goals": ["reduce_churn"]}}
    assert "You told us what you want to achieve in the next six months: reduce churn." in (
        _welcome(questionnaire, "en", only_goals)
    )
    silent = _welcome(questionnaire, "en", {})
    assert "You told us" not in silent


def test_a_misspelt_question_is_found_when_templates_are_validated(questionnaire, tmp_path):
    for path in TEMPLATES.glob("*"):
        (tmp_path / path.name).write_text(path.read_text())
    html = tmp_path / "welcome.html.j2"
    html.write_text(html.read_text().replace("member.answers.goals", "member.answers.gaols"))
    problems = validate_templates(tmp_path, community_name="Builders", questionnaire=questionnaire)
    assert any(
        "gaols" in problem.message and Path(problem.path).name == "welcome.html.j2"
        for problem in problems
    ), problems
    assert validate_templates(TEMPLATES, community_name="B", questionnaire=questionnaire) == []


def test_a_renderer_refuses_an_unknown_question_with_a_questionnaire(questionnaire) -> None:
    renderer = TemplateRenderer(
        TEMPLATES,
        community_name="Builders",
        public_base_url="https://example.org",
        unsubscribe_secret="secret",
        questionnaire=questionnaire,
    )
    message = SimpleNamespace(id=1, subject="", context={}, journey_key="j", step_id="s")
    member = SimpleNamespace(
        id=1, email="a@example.org", first_name="", last_name="", language="en"
    )
    context = renderer.build_context(message, member)
    assert context["member"]["time_zone"] == "UTC"
    assert context["member"]["segments"] == [] and context["member"]["lifecycle"] is None
    with pytest.raises(TemplateError, match="gaols"):
        renderer.render_subject("{{ member.answers.gaols.text }}", context, what="subject")
