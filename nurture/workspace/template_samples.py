"""Sample data the email templates are checked against: what the journey engine puts in a message.

One place for every sample (items, upcoming events in slots, one trigger context per trigger
kind), so that the checks render templates with what the engine really produces.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SAMPLE_ITEMS", "SAMPLE_TRIGGER_CONTEXTS", "AnySlots", "sample_events"]

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

SAMPLE_TRIGGER_CONTEXTS: dict[str, dict[str, Any]] = {
    "member_joined": {},
    "questionnaire_answered": {},
    "segment_entered": {
        "segment": "organisers",
        "segment_label": "Event organisers",
        "at": "2026-10-28T09:00:00+00:00",
    },
    "segment_left": {
        "segment": "organisers",
        "segment_label": "Event organisers",
        "at": "2026-10-28T09:00:00+00:00",
    },
    "anniversary": {"date": "birthday", "years": 3, "on": "2026-11-01"},
    "activity": {
        "event": {
            "type": "post",
            "occurred_at": "2026-10-31T16:20:00+00:00",
            "content_key": None,
            "properties": {
                "title": "Our first meetup: 40 people & <b>a lot</b> of pizza",
                "excerpt": "We did not expect so many of you. Here is what we learnt.",
            },
            "count": 1,
        }
    },
    "inactivity": {"days": 60, "last_active_at": None},
    "community_milestone": {"threshold": 1000, "member_count": 1004},
    "schedule": {
        "run_at": "2026-11-01T08:00:00+00:00",
        "period_start": "2026-10-01T08:00:00+00:00",
    },
    "content_gap": {"topic": "moderation", "item_count": 1, "engagements": 7},
}
"""What each trigger kind records (``trigger`` in templates), with realistic values."""


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
            "reason": "",
        }
        for month, title, kind, start in (
            ("december", "Welcome event for new members", "event", "2026-12-16T18:00:00+01:00"),
            ("january", "Moderation clinic", "webinar", "2027-01-05T17:30:00+01:00"),
            ("february", "Community managers' breakfast", "event", "2027-02-02"),
        )
    ]
    return events[:count]


class AnySlots(dict[str, list[dict[str, Any]]]):
    """Slots as a journey step fills them, whatever their names: upcoming events each."""

    def __missing__(self, key: str) -> list[dict[str, Any]]:
        return sample_events()
