"""Sample data the email templates are checked against: what the journey engine puts in a message.

One place for every sample (items, upcoming events in slots, one trigger context per trigger
kind), so that the checks render templates with what the engine really produces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nurture.workspace.questionnaire import Question, Questionnaire

__all__ = [
    "SAMPLE_ITEMS",
    "AnySlots",
    "sample_events",
    "sample_profile",
    "sample_trigger_contexts",
]

SAMPLE_ITEMS: tuple[dict[str, Any], ...] = (
    {
        "key": "sample-masterclass",
        "title": "Grow a B2B community that lasts",
        "url": "https://example.org/library/b2b-masterclass",
        "kind": "masterclass",
        "summary": "Three levers that work, with the numbers behind them.",
        "language": "en",
        "reason": "you said you want to grow a B2B community",
        "event_start": None,
    },
    {
        "key": "sample-webinar",
        "title": "Onboarding newcomers & keeping them",
        "url": "https://example.org/library/onboarding-webinar",
        "kind": "webinar",
        "summary": "",
        "language": "en",
        "reason": "you run an employee community",
        "event_start": "2026-12-16T18:00:00+01:00",
        "time_zone": None,
        "venue": None,
    },
    {
        "key": "sample-article",
        "title": "Moderation without burnout",
        "url": "https://example.org/library/moderation",
        "kind": "article",
        "summary": "A rota, a charter and two tools.",
        "language": "en",
        "reason": "",
        "event_start": None,
    },
    {
        "key": "sample-event",
        "title": "Paris meetup",
        "url": "https://example.org/events/paris",
        "kind": "event",
        "summary": "Drinks and talks.",
        "language": "fr",
        "reason": "you like meeting people",
        "event_start": "2027-01-05T17:30:00+01:00",
        "time_zone": "Europe/Paris",
        "venue": "La Cantine, Paris",
    },
    {
        "key": "sample-discussion",
        "title": "What is your onboarding checklist?",
        "url": "https://example.org/forum/onboarding-checklist",
        "kind": "discussion",
        "summary": "",
        "language": "en",
        "reason": "members like you joined it",
        "event_start": None,
    },
    {
        "key": "sample-podcast",
        "title": "A kind the UI strings do not know",
        "url": "https://example.org/library/podcast",
        "kind": "podcast",
        "summary": "",
        "language": "en",
        "reason": "",
        "event_start": None,
    },
)
"""Items as the journey engine puts them in ``items``: every kind, optional fields empty too."""


def sample_trigger_contexts() -> dict[str, dict[str, Any]]:
    """What each trigger kind records (``trigger`` in templates), as the journey engine stores it.

    The samples live beside the triggers that produce them
    (:func:`nurture.journeys.trigger_sample`).
    """
    # The journeys package reads workspace files: imported when used, not at import time.
    from nurture.journeys.triggers import TRIGGER_CONTEXTS, trigger_sample

    return {kind: trigger_sample(kind).to_stored() for kind in TRIGGER_CONTEXTS}


def sample_events(count: int = 3) -> list[dict[str, Any]]:
    """Upcoming events as the journey engine puts them in a slot (``order: upcoming``).

    Args:
        count: How many (at most 3).

    Returns:
        Items with ``event_start``, soonest first.
    """
    events = [
        {
            "key": f"sample-event-{month}",
            "title": title,
            "url": f"https://example.org/events/{month}",
            "kind": kind,
            "summary": "",
            "language": "en",
            "event_start": start,
            "time_zone": zone,
            "venue": venue,
            "reason": "",
        }
        for month, title, kind, start, zone, venue in (
            (
                "december",
                "Welcome event for new members",
                "event",
                "2026-12-16T18:00:00+01:00",
                "Europe/Paris",
                "La Cantine, Paris",
            ),
            ("january", "Moderation clinic", "webinar", "2027-01-05T17:30:00+01:00", None, None),
            ("february", "Community managers' breakfast", "event", "2027-02-02", None, None),
        )
    ]
    return events[:count]


def _sample_answer(question: Question) -> Any:
    if question.kind == "single_choice":
        return question.options[0].key
    if question.kind == "multiple_choice":
        return [option.key for option in question.options[:2]]
    if question.kind == "scale":
        return question.min
    if question.kind == "date":
        return "2026-09-01"
    return "I want our members to help each other"


def sample_profile(questionnaire: Questionnaire | None, *, answered: bool) -> dict[str, Any]:
    """What a message stores of its member (``profile``), as the journey engine fills it.

    Args:
        questionnaire: The workspace's questionnaire; None: no answers.
        answered: Whether the sample member answered every question, or none.

    Returns:
        The stored form of a ``MemberFacts``.
    """
    answers = (
        {question.key: _sample_answer(question) for question in questionnaire.questions}
        if answered and questionnaire is not None
        else {}
    )
    return {
        "answers": answers,
        "attributes": {"country": "FR"} if answered else {},
        "lifecycle": "new" if answered else None,
        "segments": ["french-founders"] if answered else [],
    }


class AnySlots(dict[str, list[dict[str, Any]]]):
    """Slots as a journey step fills them, whatever their names: upcoming events each."""

    def __missing__(self, key: str) -> list[dict[str, Any]]:
        return sample_events()
