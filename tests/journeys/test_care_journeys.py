"""The demo workspace's care journeys load, name existing templates, and every email renders.

Each template is rendered in French and English with the context the engine gives it (items,
named slots, what the trigger recorded) and with as little as possible (no items, empty slots,
no trigger), since templates run with strict undefined variables.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nurture.delivery import TemplateRenderer, list_email_templates
from nurture.journeys import load_journeys
from nurture.journeys.models import JourneyDefinition, SendStep
from nurture.journeys.policy import load_sending_rules

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = ROOT / "content"
JOURNEYS_DIR = WORKSPACE / "journeys"
TEMPLATES_DIR = WORKSPACE / "templates"
NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)

CARE_JOURNEYS = {
    "welcome": "member_joined",
    "questionnaire_reminder": "member_joined",
    "first_contribution": "activity",
    "birthday": "anniversary",
    "milestone": "community_milestone",
    "content_invitation": "content_gap",
    "reengagement": "inactivity",
    "digest": "schedule",
}

POST_TITLE = "Our first meetup: 40 people & <b>a lot</b> of pizza"
POST_EXCERPT = "What went well, what we would change, and the checklist we will reuse."

ITEMS: list[dict[str, Any]] = [
    {
        "key": "community-roi-metrics-that-matter",
        "title": "Community ROI: the metrics that matter",
        "url": "https://community.example.org/articles/community-roi-metrics-that-matter",
        "kind": "article",
        "summary": "Five numbers your board will understand.",
        "reason": "You want to: measure ROI",
        "language": "en",
    },
    {
        "key": "developer-ambassador-programme",
        "title": "Build a developer ambassador programme",
        "url": "https://community.example.org/articles/developer-ambassador-programme",
        "kind": "masterclass",
        "summary": "",
        "reason": "Popular with members like you",
        "language": "en",
    },
    {
        "key": "discussion-maintainer-burnout",
        "title": "Maintainer burnout: how do you say no?",
        "url": "https://community.example.org/discussions/maintainer-burnout",
        "kind": "discussion",
        "summary": "A thread from the community.",
        "reason": "Because you read “Good first issues”",
        "language": "en",
    },
]
EVENTS: list[dict[str, Any]] = [
    {
        "key": "event-monthly-welcome-december",
        "title": "Welcome event for new members — December",
        "url": "https://community.example.org/events/monthly-welcome-december-2026",
        "kind": "event",
        "summary": "Meet other new members and a few regulars.",
        "reason": "",
        "language": "en",
        "event_start": "2026-12-16T18:00:00+00:00",
    },
    {
        "key": "webinar-moderation",
        "title": "Moderation without burnout",
        "url": "https://community.example.org/events/moderation-webinar",
        "kind": "webinar",
        "summary": "",
        "reason": "",
        "language": "en",
        "event_start": "2027-01-05T17:30:00+01:00",
    },
]

TRIGGERS: dict[str, dict[str, Any]] = {
    "member_joined": {},
    "questionnaire_answered": {},
    "activity": {
        "event": {
            "type": "post",
            "occurred_at": "2026-10-31T18:12:00+01:00",
            "content_key": None,
            "properties": {"channel": "events", "title": POST_TITLE, "excerpt": POST_EXCERPT},
            "count": 1,
        }
    },
    "anniversary": {"date": "1990-11-01", "years": 36},
    "community_milestone": {"threshold": 1000, "member_count": 1003},
    "content_gap": {"topic": "moderation", "item_count": 1},
    "inactivity": {"days": 30, "last_active_at": "2026-10-01T10:00:00+00:00"},
    "schedule": {
        "run_at": "2026-11-01T08:00:00+00:00",
        "period_start": "2026-10-01T07:00:00+00:00",
    },
}


def _renderer() -> TemplateRenderer:
    return TemplateRenderer(
        TEMPLATES_DIR,
        community_name="Builders & Co",
        public_base_url="https://nurture.example.org/",
        unsubscribe_secret="test-secret",
    )


def _member(language: str) -> SimpleNamespace:
    return SimpleNamespace(
        id=7,
        first_name="Ada" if language == "en" else "Adèle",
        last_name="Lovelace",
        email="ada@example.org",
        language=language,
        time_zone="America/New_York" if language == "en" else "Europe/Paris",
    )


def _message(
    journey: JourneyDefinition, step: SendStep, context: dict[str, Any], language: str = "en"
) -> Any:
    return SimpleNamespace(
        id=12,
        template=step.template,
        subject=step.subject_for(language),
        context=context,
        journey_key=journey.id,
        step_id=step.id,
    )


@pytest.fixture(scope="module")
def journeys() -> dict[str, JourneyDefinition]:
    return {journey.id: journey for journey in load_journeys(JOURNEYS_DIR, TEMPLATES_DIR)}


def _send_steps(journeys: dict[str, JourneyDefinition]) -> list[tuple[JourneyDefinition, SendStep]]:
    return [
        (journey, step)
        for journey in journeys.values()
        for step in journey.steps
        if isinstance(step, SendStep)
    ]


def _full_context(journey: JourneyDefinition, step: SendStep) -> dict[str, Any]:
    slots = {name: list(EVENTS[: slot.count]) for name, slot in step.slots.items()}
    return {
        "items": ITEMS[: max(step.content.count, 3)],
        "slots": slots,
        "trigger": TRIGGERS[journey.trigger.type],
        "questionnaire_answered": False,
        "questionnaire_url": "https://community.example.org/questionnaire?t=abc",
    }


def _empty_context(step: SendStep) -> dict[str, Any]:
    return {"items": [], "slots": {name: [] for name in step.slots}, "trigger": {}}


def test_every_journey_file_loads_with_its_templates(journeys) -> None:
    files = sorted(path.stem for path in JOURNEYS_DIR.glob("*.yaml"))
    assert sorted(journeys) == files
    for path in JOURNEYS_DIR.glob("*.yaml"):
        assert path.read_text(encoding="utf-8").startswith(
            "# yaml-language-server: $schema=journey.schema.json\n"
        ), path.name


def test_sending_rules_load() -> None:
    rules = load_sending_rules(WORKSPACE / "sending.yaml")
    assert rules.budget is not None and rules.budget.messages == 3
    assert rules.quiet_hours is not None
    assert (rules.quiet_hours.start, rules.quiet_hours.end) == ("21:00", "08:00")


@pytest.mark.parametrize(("journey_id", "trigger_type"), sorted(CARE_JOURNEYS.items()))
def test_care_journey_exists_with_its_trigger(journeys, journey_id, trigger_type) -> None:
    assert journey_id in journeys
    assert journeys[journey_id].trigger.type == trigger_type


def test_journey_rules_fit_the_brief(journeys) -> None:
    promotion = {"content_invitation", "digest"}
    for journey in journeys.values():
        assert journey.category == ("promotion" if journey.id in promotion else "care")
    care_priorities = [j.priority for j in journeys.values() if j.category == "care"]
    assert journeys["digest"].priority > max(care_priorities)
    assert journeys["birthday"].reentry == "each_occurrence"
    assert journeys["content_invitation"].reentry == "once"
    assert journeys["questionnaire_reminder"].goal is not None
    assert journeys["questionnaire_reminder"].goal.condition == "answers"
    welcome_slot = journeys["welcome"].step("send_welcome").slots["welcome_event"]
    assert welcome_slot.order == "upcoming" and welcome_slot.kinds == ["event"]
    assert "welcome event" in (welcome_slot.tags or [])


def test_every_referenced_template_exists_in_html_and_text(journeys) -> None:
    names = set(list_email_templates(TEMPLATES_DIR))
    for journey, step in _send_steps(journeys):
        assert step.template in names, (journey.id, step.id, step.template)
        for suffix in (".html.j2", ".txt.j2"):
            assert (TEMPLATES_DIR / f"{step.template}{suffix}").is_file()


def test_every_template_is_in_the_readme_table() -> None:
    readme = (TEMPLATES_DIR / "README.md").read_text(encoding="utf-8")
    for name in list_email_templates(TEMPLATES_DIR):
        assert f"| `{name}` |" in readme, name


@pytest.mark.parametrize("language", ["en", "fr"])
def test_every_email_renders_with_a_full_and_an_empty_context(journeys, language) -> None:
    renderer = _renderer()
    member = _member(language)
    for journey, step in _send_steps(journeys):
        for context in (_full_context(journey, step), _empty_context(step), {}):
            message = _message(journey, step, context, language)
            email = renderer.render_message(message, member, now=NOW)
            assert email.subject, (journey.id, step.id)
            for part in (email.html, email.text):
                assert member.first_name in part, (journey.id, step.id)
                assert "/unsubscribe/" in part
                assert "None" not in part, (journey.id, step.id, context)
            assert f'<html lang="{language}">' in email.html


@pytest.mark.parametrize("language", ["en", "fr"])
def test_subjects_render_in_each_language(journeys, language) -> None:
    renderer = _renderer()
    for journey, step in _send_steps(journeys):
        context = renderer.build_context(
            _message(journey, step, _full_context(journey, step)), _member(language), NOW
        )
        subject = renderer.render_subject(step.subject_for(language), context, what=step.id)
        assert subject and "{{" not in subject, (journey.id, step.id)


def test_first_contribution_quotes_the_post_escaped(journeys) -> None:
    journey = journeys["first_contribution"]
    step = journey.step("send_thanks")
    assert isinstance(step, SendStep)
    email = _renderer().render_message(
        _message(journey, step, _full_context(journey, step)), _member("en"), now=NOW
    )
    escaped = "Our first meetup: 40 people &amp; &lt;b&gt;a lot&lt;/b&gt; of pizza"
    assert escaped in email.html
    assert "<b>a lot</b>" not in email.html
    assert POST_TITLE in email.text
    assert POST_EXCERPT in email.html and POST_EXCERPT in email.text


def test_first_contribution_without_post_properties_says_thanks(journeys) -> None:
    journey = journeys["first_contribution"]
    step = journey.step("send_thanks")
    assert isinstance(step, SendStep)
    context = {"trigger": {"event": {"type": "post", "properties": {}, "count": 1}}}
    email = _renderer().render_message(_message(journey, step, context), _member("fr"), now=NOW)
    assert "merci" in email.text
    assert "<blockquote" not in email.html


def test_welcome_invites_to_the_next_welcome_event_from_its_slot(journeys) -> None:
    journey = journeys["welcome"]
    step = journey.step("send_welcome")
    assert isinstance(step, SendStep)
    context = _full_context(journey, step)
    # An online event, in each member's own zone, named (New York, then Paris).
    for language, when in (
        ("en", "Wednesday, December 16, 2026, 1:00\u202fPM New York time"),
        ("fr", "mercredi 16 décembre 2026, 19 h 00, heure de Paris"),
    ):
        email = _renderer().render_message(
            _message(journey, step, context), _member(language), now=NOW
        )
        for part in (email.html, email.text):
            assert EVENTS[0]["title"] in part
            assert EVENTS[0]["url"] in part
            assert when in part
    empty = _renderer().render_message(
        _message(journey, step, _empty_context(step)), _member("en"), now=NOW
    )
    assert "The date of the next one is not set yet" in empty.text


def test_milestone_content_invitation_and_digest_read_the_trigger(journeys) -> None:
    renderer = _renderer()

    def render(journey_id: str, step_id: str, language: str) -> Any:
        journey = journeys[journey_id]
        step = journey.step(step_id)
        assert isinstance(step, SendStep)
        context = _full_context(journey, step)
        return renderer.render_message(_message(journey, step, context), _member(language), now=NOW)

    assert "1,000" in render("milestone", "send_celebration", "en").text
    assert "1 000" in render("milestone", "send_celebration", "fr").text
    invitation = render("content_invitation", "send_invitation", "en")
    assert "moderation" in invitation.text and "only one piece" in invitation.text
    digest = render("digest", "send_digest", "fr")
    assert "novembre" in digest.text
    assert "Moderation without burnout" in digest.text
    assert "mardi 5 janvier 2027, 17 h 30, heure de Paris" in digest.html
