"""The hosted questionnaire over real HTTP: the form, CSRF, answers stored, the trigger due."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from nurture.journeys.models import QuestionnaireAnsweredTrigger
from nurture.journeys.triggers import trigger_candidates
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.stages import sync_workspace
from nurture.storage.models import Answer, MemberProfile, Recommendation
from nurture.web import create_app
from nurture.web.questionnaire_form import read_answers
from nurture.workspace import load_questionnaire

from .conftest import NOW, token_for
from .test_api import serve

CONTENT = Path(__file__).resolve().parents[2] / "content"


@pytest.fixture
def web(settings: Settings, engine) -> Iterator[httpx.Client]:
    settings = settings.model_copy(update={"workspace": CONTENT, "embedding_model": "hashing-64"})
    with Runtime(settings, engine=engine) as runtime:
        sync_workspace(runtime, NOW)  # the library, so that a member can be matched
    app = create_app(settings, engine=engine, clock=lambda: NOW)
    for base_url in serve(app):
        with httpx.Client(base_url=base_url) as client:
            yield client


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def test_the_form_in_french_stores_answers_and_makes_the_trigger_due(web, session, add_member):
    member = add_member(language="fr")
    token = token_for(member)
    page = web.get(f"/questionnaire/{token}")
    assert page.status_code == 200 and '<html lang="fr">' in page.text
    assert "Quel intitulé décrit le mieux votre rôle ?" in page.text
    assert 'type="radio"' in page.text and 'type="checkbox"' in page.text
    assert "<textarea" in page.text and "(obligatoire)" in page.text
    form = {
        "csrf": _csrf(page.text),
        "q-role": "founder",
        "q-community_kind": "customer",
        "q-goals": ["grow_members"],
        "q-experience": "4",
        "q-expectations": "Rencontrer des pairs",
    }
    saved = web.post(f"/questionnaire/{token}", data=form)
    assert saved.status_code == 200, saved.text
    assert "Vos réponses sont enregistrées" in saved.text
    answers = dict(
        session.execute(
            select(Answer.question_key, Answer.value).where(Answer.member_id == member.id)
        ).all()
    )
    assert answers == {
        "role": "founder",
        "community_kind": "customer",
        "goals": ["grow_members"],
        "experience": 4,
        "expectations": "Rencontrer des pairs",
    }
    due = trigger_candidates(
        QuestionnaireAnsweredTrigger(type="questionnaire_answered"), session, NOW, "thanks"
    )
    assert [candidate.member_id for candidate in due] == [member.id]
    # profiled and matched at once, in the background, after the page was answered
    profiled = _wait_for(
        session, select(MemberProfile.member_id).where(MemberProfile.member_id == member.id)
    )
    assert profiled
    assert _wait_for(
        session, select(Recommendation.id).where(Recommendation.member_id == member.id)
    )


def _wait_for(session, query, seconds: float = 60.0) -> list[int]:
    """The rows ``query`` finds once a background task wrote them (empty if it never does)."""
    deadline = time.monotonic() + seconds
    while True:
        session.rollback()  # a new transaction sees what the server committed
        found = list(session.scalars(query))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_missing_answers_and_a_forged_form_are_refused(web, session, add_member):
    member = add_member()
    token = token_for(member)
    page = web.get(f"/questionnaire/{token}")
    incomplete = web.post(
        f"/questionnaire/{token}", data={"csrf": _csrf(page.text), "q-role": "founder"}
    )
    assert incomplete.status_code == 422
    assert "Please answer this question." in incomplete.text
    assert 'value="founder" checked' in incomplete.text  # the member's choice is kept
    forged = httpx.post(
        f"{web.base_url}/questionnaire/{token}",
        data={"csrf": "0" * 64, "q-role": "founder", "q-community_kind": "customer",
              "q-goals": "grow_members"},
    )  # fmt: skip
    assert forged.status_code == 403 and "expired" in forged.text
    assert web.get(f"/questionnaire/{token[:-4]}AAAA").status_code == 400
    assert session.scalars(select(Answer)).all() == []


def test_read_answers_checks_each_question():
    questionnaire = load_questionnaire(CONTENT / "questionnaire.yaml")
    answers, problems = read_answers(
        {"q-role": ["king"], "q-goals": ["grow_members"], "q-experience": ["9"]}, questionnaire
    )
    assert problems == {"role": "invalid", "community_kind": "missing", "experience": "invalid"}
    assert answers == {"goals": ["grow_members"]}


def test_every_question_kind_has_a_labelled_control():
    from nurture.web.questionnaire_form import questionnaire_page
    from nurture.workspace import Questionnaire

    labels = {"en": "Q", "fr": "Q"}
    questionnaire = Questionnaire.model_validate(
        {
            "version": 1,
            "questions": [
                {"key": "one", "kind": "single_choice", "labels": labels, "required": True,
                 "options": [{"key": "a", "labels": labels}, {"key": "b", "labels": labels}]},
                {"key": "many", "kind": "multiple_choice", "labels": labels,
                 "options": [{"key": "a", "labels": labels}, {"key": "b", "labels": labels}]},
                {"key": "text", "kind": "free_text", "labels": labels},
                {"key": "level", "kind": "scale", "labels": labels, "min": 1, "max": 3},
                {"key": "day", "kind": "date", "labels": labels},
            ],
        }
    )  # fmt: skip
    page = questionnaire_page(
        "en", questionnaire, community="C", csrf="t", values={"day": "2026-01-02", "level": 2}
    )
    ids = re.findall(r' id="(q-[^"]+)"', page)
    for target in re.findall(r'<label for="([^"]+)"', page):
        assert target in ids
    assert page.count('type="radio"') == 2 + 3 and page.count('type="checkbox"') == 2
    assert '<input type="date" id="q-day-input" name="q-day" value="2026-01-02">' in page
    assert 'value="2" checked' in page and "1 = lowest, 3 = highest" in page
    answers, problems = read_answers(
        {"q-one": ["a"], "q-day": ["2026-01-02"], "q-level": ["3"], "q-many": ["a", "b"]},
        questionnaire,
    )
    assert problems == {}
    assert answers == {"one": "a", "many": ["a", "b"], "level": 3, "day": "2026-01-02"}
