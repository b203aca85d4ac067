"""What a journey email holds: named slots first, in the member's language, never repeated.

The engine and ``nurture preview`` fill emails through one ``ContentPicker``; these tests run
both against a real database with real recommendations (``recommended_content``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from nurture.cli.preview import preview_message_context
from nurture.delivery import TemplateRenderer
from nurture.delivery.history import content_keys_in, sent_item_keys
from nurture.journeys import (
    ContentPick,
    MessageContext,
    RecommendedContent,
    advance_journeys,
    load_journey,
    recommended_content,
)
from nurture.journeys.content import upcoming_content
from nurture.journeys.models import ContentSlot, JourneyDefinition, SendStep
from nurture.storage.models import (
    ContentItem,
    Enrollment,
    Journey,
    Member,
    Message,
    MessageStatus,
    Recommendation,
)
from tests.journeys.engine_helpers import add_member, journey, messages, no_content, send

ROOT = Path(__file__).resolve().parents[2]
WELCOME = ROOT / "content" / "journeys" / "welcome.yaml"
NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
JOINED = NOW - dt.timedelta(days=1)


def _item(session: Session, key: str, kind: str = "article", language: str = "en", **values: Any):
    item = ContentItem(
        key=key,
        title=f"Title of {key}",
        url=f"https://example.org/{key}",
        kind=kind,
        language=language,
        summary=f"About {key}.",
        text_hash=key,
        source_path=f"library/{key}.md",
        **values,
    )
    session.add(item)
    session.flush()
    return item


def _event(session: Session, key: str, language: str, days: int, tags: list[str]) -> ContentItem:
    return _item(
        session,
        key,
        kind="event",
        language=language,
        tags=tags,
        event_start=NOW + dt.timedelta(days=days),
    )


def _recommend(session: Session, member: Member, items: list[ContentItem]) -> None:
    for rank, item in enumerate(items, start=1):
        session.add(
            Recommendation(
                member_id=member.id,
                content_item_id=item.id,
                rank=rank,
                score=1 / rank,
                reason=f"reason {rank}",
            )
        )
    session.flush()


def _sent_before(session: Session, member: Member, context: dict[str, Any]) -> None:
    """A message the member already got from another journey."""
    earlier = Journey(
        key="earlier", version=1, definition_hash="h", definition={}, source_path="earlier.yaml"
    )
    session.add(earlier)
    session.flush()
    enrollment = Enrollment(journey_id=earlier.id, journey_key="earlier", member_id=member.id)
    session.add(enrollment)
    session.flush()
    session.add(
        Message(
            enrollment_id=enrollment.id,
            step_id="send",
            member_id=member.id,
            journey_key="earlier",
            template="digest",
            subject="Earlier",
            scheduled_at=NOW - dt.timedelta(days=10),
            status=MessageStatus.SENT,
            context=context,
        )
    )
    session.flush()


def _keys(picks: list[dict[str, Any]]) -> list[str]:
    return [pick["key"] for pick in picks]


@pytest.fixture
def welcome() -> JourneyDefinition:
    return load_journey(WELCOME)


def test_the_event_slot_comes_first_and_the_picks_never_repeat_it(
    session: Session, welcome: JourneyDefinition
) -> None:
    english = _event(session, "welcome-evening", "en", 20, ["welcome event"])
    # The French evening is sooner: it must not take the English member's slot.
    _event(session, "soiree-accueil", "fr", 5, ["événement de bienvenue"])
    articles = [_item(session, f"article-{n}") for n in range(5)]
    ada = add_member(session, "ada@example.org", JOINED, language="en-GB")
    _recommend(session, ada, [english, *articles])

    advance_journeys(session, [welcome], NOW)

    (message,) = messages(session)
    assert _keys(message.context["slots"]["welcome_event"]) == ["welcome-evening"]
    assert _keys(message.context["items"]) == ["article-0", "article-1", "article-2"]
    assert message.context["items"][0]["reason"] == "reason 2"


def test_no_event_in_the_members_language_leaves_the_slot_empty_and_the_email_says_so(
    session: Session, welcome: JourneyDefinition
) -> None:
    _event(session, "welcome-evening", "en", 20, ["welcome event"])
    camille = add_member(session, "camille@example.org", JOINED, language="fr")

    advance_journeys(session, [welcome], NOW, no_content)

    (message,) = messages(session)
    assert message.context["slots"] == {"welcome_event": []}
    renderer = TemplateRenderer(
        ROOT / "content" / "templates",
        community_name="Example Community",
        public_base_url="https://community.example.org",
        unsubscribe_secret="test-secret",
    )
    email = renderer.render_message(message, camille, now=NOW)
    assert "La date du prochain n'est pas encore fixée" in email.text
    assert "La date du prochain n'est pas encore fixée" in email.html
    for part in (email.text, email.html):
        assert "welcome-evening" not in part and "Title of" not in part


def test_preview_and_engine_fill_the_same_email_for_the_same_member_and_moment(
    session: Session,
) -> None:
    definition = journey(
        {"type": "member_joined"},
        send(
            "hello",
            "done",
            content={"count": 3},
            slots={
                "next_event": {"kinds": ["event"], "order": "upcoming", "count": 1},
                "guide": {"tags": ["Guide"], "count": 1},
            },
        ),
        {"id": "done", "type": "exit"},
        id="welcome_like",
    )
    step = definition.step("hello")
    assert isinstance(step, SendStep)
    first = _event(session, "meetup-november", "en", 3, [])
    second = _event(session, "meetup-december", "en", 30, [])
    french = _event(session, "rencontre", "fr", 2, [])
    articles = [_item(session, f"article-{n}", tags=["guide"] if n == 3 else []) for n in range(6)]
    french_articles = [_item(session, f"article-fr-{n}", language="fr") for n in range(4)]
    ada = add_member(session, "ada@example.org", JOINED, language="en")
    camille = add_member(session, "camille@example.org", JOINED, language="fr")
    _recommend(session, ada, [second, *articles])
    _recommend(session, camille, [french, *french_articles])
    _sent_before(
        session, ada, {"items": [{"key": "article-0"}], "slots": {"x": [{"key": first.key}]}}
    )

    previews = {
        member.id: preview_message_context(session, member, lang, definition, step, NOW)
        for member, lang in ((ada, "en"), (camille, "fr"))
    }
    advance_journeys(session, [definition], NOW)

    queued = {message.member_id: message.context for message in messages(session, "welcome_like")}
    assert queued == {member_id: context.to_stored() for member_id, context in previews.items()}
    ada_context = queued[ada.id]
    assert _keys(ada_context["slots"]["next_event"]) == ["meetup-december"]
    assert _keys(ada_context["slots"]["guide"]) == ["article-3"]
    assert _keys(ada_context["items"]) == ["article-1", "article-2", "article-4"]
    camille_context = queued[camille.id]
    assert _keys(camille_context["slots"]["next_event"]) == ["rencontre"]
    assert camille_context["slots"]["guide"] == []
    assert _keys(camille_context["items"]) == ["article-fr-0", "article-fr-1", "article-fr-2"]


def test_items_already_sent_are_read_from_items_and_slots_of_any_stored_shape(
    session: Session,
) -> None:
    ada = add_member(session, "ada@example.org", JOINED)
    _sent_before(
        session,
        ada,
        {
            "items": [{"key": "a"}, "b", {"title": "no key"}, 7],
            "slots": {"next": [{"key": "c"}], "broken": "d"},
            "trigger": {"key": "not an item"},
        },
    )
    assert sent_item_keys(session, [ada.id]) == {ada.id: {"a", "b", "c"}}
    assert sent_item_keys(session, [ada.id], statuses=[MessageStatus.FAILED]) == {}
    assert content_keys_in(None) == set()
    assert content_keys_in({"items": {"first": {"key": "e"}}}) == {"e"}


def test_a_message_context_stores_every_field_of_its_picks() -> None:
    context = MessageContext.model_validate(
        {
            "items": [{"key": "a", "title": "A", "url": "https://x.test/a", "summary": None}],
            "slots": {"next": [{"key": "e", "event_start": dt.datetime(2027, 1, 5, 17, 30)}]},
            "trigger": {"threshold": 1000},
        }
    )
    stored = context.to_stored()
    assert stored["items"] == [
        {
            "key": "a",
            "title": "A",
            "url": "https://x.test/a",
            "kind": "",
            "summary": "",
            "language": None,
            "reason": "",
            "event_start": None,
            "time_zone": None,
            "venue": None,
            "score": None,
        }
    ]
    assert stored["slots"]["next"][0]["event_start"] == "2027-01-05T17:30:00"
    assert stored["trigger"] == {"threshold": 1000}
    assert stored["questionnaire_answered"] is False
    assert stored["profile"] == {"answers": {}, "attributes": {}, "lifecycle": None, "segments": []}
    assert MessageContext.model_validate(stored) == context


def test_member_profiles_hold_answers_attributes_lifecycle_and_effective_segments(
    session: Session,
) -> None:
    from nurture.journeys.content import member_profiles
    from nurture.storage.models import (
        Answer,
        AssignmentState,
        LifecycleStage,
        MemberProfile,
        Segment,
        SegmentAssignment,
        SegmentKind,
    )

    ana = add_member(session, "ana@example.org", NOW, attributes={"country": "FR"})
    bob = add_member(session, "bob@example.org", NOW)
    founders = Segment(key="french-founders", label="Founders", kind=SegmentKind.RULE)
    pending = Segment(key="event-regulars", label="Regulars", kind=SegmentKind.RULE)
    session.add_all([founders, pending])
    session.flush()
    session.add_all(
        [
            Answer(member_id=ana.id, question_key="goals", value=["run_events"]),
            MemberProfile(
                member_id=ana.id,
                features=np.zeros(2, dtype=np.float32),
                lifecycle_stage=LifecycleStage.NEW,
                feature_names_hash="h",
            ),
            SegmentAssignment(
                member_id=ana.id,
                segment_id=founders.id,
                state=AssignmentState.EFFECTIVE,
                since=NOW,
            ),
            SegmentAssignment(
                member_id=ana.id, segment_id=pending.id, state=AssignmentState.PENDING, since=NOW
            ),
        ]
    )
    session.flush()

    facts = member_profiles(session, [ana.id, bob.id, 999])

    assert set(facts) == {ana.id, bob.id}
    assert facts[ana.id].answers == {"goals": ["run_events"]}
    assert facts[ana.id].attributes == {"country": "FR"}
    assert facts[ana.id].lifecycle == "new"
    assert facts[ana.id].segments == ["french-founders"]  # a pending place does not count yet
    assert facts[bob.id].model_dump() == {
        "answers": {},
        "attributes": {},
        "lifecycle": None,
        "segments": [],
    }
    assert member_profiles(session, []) == {}


def test_recommended_content_read_for_a_chunk_picks_as_recommended_content(
    session: Session,
) -> None:
    articles = [_item(session, f"article-{n}") for n in range(6)]
    webinar = _item(session, "webinar", kind="webinar")
    expired = _item(session, "expired", expires_at=NOW - dt.timedelta(days=1))
    started = _event(session, "started", "en", -1, [])
    ada = add_member(session, "ada@example.org", JOINED)
    grace = add_member(session, "grace@example.org", JOINED)
    alone = add_member(session, "alone@example.org", JOINED)
    _recommend(session, ada, [expired, articles[0], webinar, started, *articles[1:]])
    _recommend(session, grace, [articles[5], articles[4], webinar])
    _recommend(session, alone, articles[:2])
    picker = RecommendedContent(NOW)
    picker.load(session, [ada.id, grace.id, add_member(session, "none@x.org", JOINED).id])
    asks = [
        (3, None, frozenset()),
        (2, ["webinar"], frozenset()),
        (2, None, frozenset({"article-0", "article-1"})),
        (1, ["article"], frozenset({"article-5"})),
    ]
    statements: list[str] = []
    event.listen(session.get_bind(), "before_cursor_execute", lambda *a: statements.append(a[2]))
    for member in (ada, grace):
        for count, kinds, exclude in asks:
            expected = recommended_content(session, member.id, count, kinds, exclude, now=NOW)
            before = len(statements)
            assert picker(session, member.id, count, kinds, exclude) == expected
            assert len(statements) == before  # read at load, not again
    assert _keys(picker(session, ada.id, 3, None, frozenset())) == [
        "article-0",
        "webinar",
        "article-1",
    ]
    # A member not loaded is read alone, with the same picks.
    assert picker(session, alone.id, 5, None, frozenset()) == recommended_content(
        session, alone.id, 5, None, frozenset(), now=NOW
    )
    # ``picks``: the same picks as models, each loaded recommendation's made once.
    for member in (ada, grace, alone):
        for count, kinds, exclude in asks:
            expected = [
                ContentPick.from_item(pick)
                for pick in recommended_content(session, member.id, count, kinds, exclude, now=NOW)
            ]
            assert picker.picks(session, member.id, count, kinds, exclude) == expected
    first = picker.picks(session, ada.id, 3, None, frozenset())
    assert [id(pick) for pick in picker.picks(session, ada.id, 3, None, frozenset())] == [
        id(pick) for pick in first
    ]


@pytest.mark.parametrize("count", [0, 1, 2, 5])
def test_upcoming_content_picks_the_soonest_that_fit_in_order(session: Session, count: int):
    events = [
        _event(session, "fr-soon", "fr", 1, ["Paris"]),
        _event(session, "en-soon", "en", 2, ["london"]),
        _event(session, "en-untagged", "en", 3, []),
        _event(session, "en-later", "en", 4, ["London", "talks"]),
        _event(session, "en-sent", "en", 5, ["london"]),
        _event(session, "en-last", "en", 6, ["talks"]),
    ]
    slot = ContentSlot(count=count, tags=["LONDON", "talks"], order="upcoming")
    found = upcoming_content(session, "en", slot, frozenset({"en-sent"}), NOW)
    fitting = ["en-soon", "en-later", "en-last"]
    assert [pick.key for pick in found] == fitting[:count]
    # The same from the events given (in every language, as ``upcoming_events`` reads them).
    given = upcoming_content(session, "en", slot, frozenset({"en-sent"}), NOW, events=events)
    assert given == found
