"""What a journey email holds: its named slots, its content picks, the trigger, what was sent.

A send step asks for content in two ways: named ``slots`` (the next welcome event...) and
``content`` (the template's ``items``). ``ContentPicker`` fills them in one order, for the
journey engine and ``nurture preview`` alike, so a preview shows what the engine would queue
for the same member at the same moment:

1. the slots first, in the order the step names them, then ``content``;
2. only items in the email's language (the member's language reduced to a supported one,
   ``resolve_language``): a slot with nothing suitable stays empty, and the template says so;
3. never an item already sent to the member (``nurture.delivery.history.sent_item_keys``), nor
   one an earlier slot or pick of the same email took.

``MessageContext`` is what a ``Message`` row stores (``Message.context``, JSON) and what its
templates see: ``items``, ``slots``, ``trigger``, ``questionnaire_answered`` and ``profile``
(the member's answers, attributes, lifecycle stage and segments when the email was queued,
``member_profiles``; templates read them under ``member``). The items a
member was already sent are read from stored contexts in one way only,
``nurture.delivery.history``, by the engine, by previews and by matching.

Nothing here reads the clock: the picker is given ``now``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy import Text as SqlText
from sqlalchemy import cast, select
from sqlalchemy.orm import Session

from nurture.delivery.rendering import resolve_language
from nurture.journeys.models import ContentSlot
from nurture.recommend import RecommendedItem, recommendations_for, recommendations_of
from nurture.segmentation.assignments import effective_segment_keys
from nurture.storage import among, plain_rows
from nurture.storage.models import Answer, ContentItem, Member, MemberProfile
from nurture.storage.stored_json import JsonTexts

__all__ = [
    "ContentPick",
    "ContentPicker",
    "MemberFacts",
    "MessageContext",
    "PickContent",
    "RecommendedContent",
    "member_profiles",
    "members_who_answered",
    "recommended_content",
    "upcoming_content",
    "upcoming_events",
]


def _text(value: Any) -> Any:
    """None (a column left empty) as an empty text."""
    return "" if value is None else value


def _moment(value: Any) -> Any:
    """A date or datetime as ISO 8601 text, as stored in JSON."""
    return value.isoformat() if isinstance(value, dt.date) else value


Text = Annotated[str, BeforeValidator(_text)]


class ContentPick(BaseModel):
    """One content item of an email, as stored in its message and shown by its template.

    Attributes:
        key: The content item's key.
        title: Its title.
        url: Where it lives.
        kind: article, event, webinar, masterclass, discussion...
        summary: Its short summary.
        language: The language it is written in (None: not said).
        reason: Why it was picked, in the member's language (empty for upcoming events).
        event_start: When the event starts (ISO 8601), for events.
        time_zone: The IANA zone the event is held in, when known.
        venue: Where an in-person event takes place; None for an online one.
        score: The ranking score of a recommendation (None for upcoming events).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str = Field(min_length=1)
    title: Text = ""
    url: Text = ""
    kind: Text = ""
    summary: Text = ""
    language: str | None = None
    reason: Text = ""
    event_start: Annotated[str | None, BeforeValidator(_moment)] = None
    time_zone: str | None = None
    venue: str | None = None
    score: float | None = None

    @classmethod
    def from_item(cls, item: Any) -> ContentPick:
        """A pick from what a picker returns: a mapping, a dataclass or a ``ContentPick``.

        Args:
            item: The item; keys other than the fields are dropped.

        Returns:
            The pick.
        """
        if isinstance(item, ContentPick):
            return item
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            # Its fields as they are: ``asdict`` would deep-copy each value first, to no end
            # (the pick validates and keeps scalars only).
            item = {field.name: getattr(item, field.name) for field in dataclasses.fields(item)}
        return cls.model_validate(item)

    @classmethod
    def from_content_item(cls, item: ContentItem, reason: str = "") -> ContentPick:
        """A pick of a library item (an upcoming event), with the reason it was picked."""
        return cls(
            key=item.key,
            title=item.title,
            url=item.url,
            kind=item.kind,
            summary=item.summary,
            language=item.language,
            reason=reason,
            event_start=item.event_start,
            time_zone=item.event_time_zone,
            venue=item.venue,
        )


class MemberFacts(BaseModel):
    """What a message stores of its member, for its templates (``member.answers``...).

    Attributes:
        answers: The questionnaire answers as stored, ``{question key: value}`` (option keys);
            templates read them with labels in the email's language.
        attributes: The member's extra profile attributes (import columns: ``country``...).
        lifecycle: The lifecycle stage (``new``, ``active``...), None before profiling.
        segments: The keys of the member's segments, sorted.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    answers: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    lifecycle: str | None = None
    segments: list[str] = Field(default_factory=list)


class MessageContext(BaseModel):
    """What a queued message stores (``Message.context``) and hands to its templates.

    Attributes:
        items: The send step's ``content`` picks, best first.
        slots: The send step's named slots, ``{name: [picks]}``; an empty list when nothing
            suitable was found.
        trigger: What the journey's trigger recorded when the member entered (the stored form
            of its ``TriggerContext``, see ``nurture.journeys.triggers.TRIGGER_CONTEXTS``).
        questionnaire_answered: Whether the member answered the questionnaire.
        profile: What the member told us and what we know of them (``MemberFacts``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[ContentPick] = Field(default_factory=list)
    slots: dict[str, list[ContentPick]] = Field(default_factory=dict)
    trigger: dict[str, Any] = Field(default_factory=dict)
    questionnaire_answered: bool = False
    profile: MemberFacts = Field(default_factory=MemberFacts)

    def to_stored(self) -> dict[str, Any]:
        """The context as ``Message.context`` holds it (JSON values), and templates see it."""
        return self.model_dump(mode="json")


class PickContent(Protocol):
    """Picks content items for one member's message.

    Called as ``pick_content(session, member_id, count, kinds, exclude_keys)``; returns at most
    ``count`` items (mappings with ``key``, ``title``, ``url``, ``kind``, ``summary``,
    ``language``, ``reason``..., dataclasses or ``ContentPick``), of the given kinds when
    ``kinds`` is not None, never one whose ``key`` is in ``exclude_keys``.
    """

    def __call__(
        self,
        session: Session,
        member_id: int,
        count: int,
        kinds: list[str] | None,
        exclude_keys: frozenset[str],
    ) -> Sequence[Any]:
        """Content items for the member, best first."""
        ...


def members_who_answered(session: Session, member_ids: Collection[int]) -> set[int]:
    """Which of ``member_ids`` answered the questionnaire (at least one answer)."""
    if not member_ids:
        return set()
    ids = sorted(set(member_ids))
    return set(
        plain_rows(
            session,
            select(Answer.member_id).where(among(session, Answer.member_id, ids)).distinct(),
        ).scalars()
    )


def member_profiles(session: Session, member_ids: Collection[int]) -> dict[int, MemberFacts]:
    """What the templates of each member's emails read of them, in a few bulk queries.

    Args:
        session: The database session.
        member_ids: The members.

    Returns:
        ``{member id: facts}`` for each existing member.
    """
    ids = sorted(set(member_ids))
    if not ids:
        return {}
    answers: dict[int, dict[str, Any]] = defaultdict(dict)
    # Plain rows, one array parameter of ids (``among``): the same statement whatever the
    # number of members.
    # Answers and attributes as stored text, each distinct text decoded once (``JsonTexts``):
    # thousands of members chose the same option. The values are shared: read, not changed.
    decoded = JsonTexts()
    for member_id, key, text in plain_rows(
        session,
        select(Answer.member_id, Answer.question_key, cast(Answer.value, SqlText)).where(
            among(session, Answer.member_id, ids)
        ),
    ).tuples():
        answers[member_id][key] = decoded(text)
    stages = dict(
        plain_rows(
            session,
            select(MemberProfile.member_id, MemberProfile.lifecycle_stage).where(
                among(session, MemberProfile.member_id, ids)
            ),
        )
        .tuples()
        .all()
    )
    segments = effective_segment_keys(session, ids)
    facts: dict[int, MemberFacts] = {}
    for member_id, text in plain_rows(
        session,
        select(Member.id, cast(Member.attributes, SqlText)).where(among(session, Member.id, ids)),
    ).tuples():
        attributes = decoded(text)
        stage = stages.get(member_id)
        facts[member_id] = MemberFacts(
            answers=answers.get(member_id, {}),
            attributes=dict(attributes or {}),
            lifecycle=str(stage) if stage is not None else None,
            segments=segments.get(member_id, []),
        )
    return facts


def upcoming_events(session: Session, now: dt.datetime) -> list[ContentItem]:
    """The live content items with an event start after ``now``, soonest first.

    Args:
        session: The database session.
        now: The current time.

    Returns:
        The events, in every language, soonest first (then by key).
    """
    query = select(ContentItem).where(
        ContentItem.event_start.is_not(None),
        ContentItem.event_start > now,
        ContentItem.live_at(now),
    )
    with session.no_autoflush:
        return list(session.scalars(query.order_by(ContentItem.event_start, ContentItem.key)))


def upcoming_content(
    session: Session,
    language: str | None,
    slot: ContentSlot,
    exclude_keys: frozenset[str],
    now: dt.datetime,
    *,
    events: Sequence[ContentItem] | None = None,
) -> list[ContentPick]:
    """Events not started yet for a slot (kinds, tags), soonest first, in one language only.

    Args:
        session: The database session.
        language: The email's language (reduced with ``resolve_language``); only items in it.
        slot: The slot (its ``count``, ``kinds`` and ``tags`` apply).
        exclude_keys: Keys never to pick.
        now: The current time.
        events: The upcoming events (``upcoming_events``), when the caller already read them.

    Returns:
        Up to ``slot.count`` picks; none when no event in that language fits.
    """
    wanted = resolve_language(language)
    tags = {tag.lower() for tag in slot.tags} if slot.tags else None
    found: list[ContentItem] = []
    for item in events if events is not None else upcoming_events(session, now):
        if (
            item.key not in exclude_keys
            and item.language == wanted
            and (not slot.kinds or item.kind in slot.kinds)
            and (tags is None or any(str(tag).lower() in tags for tag in item.tags or ()))
        ):
            if len(found) == slot.count:
                break  # the soonest are found: the later ones are not looked at
            found.append(item)
    return [ContentPick.from_content_item(item) for item in found]


def recommended_content(
    session: Session,
    member_id: int,
    count: int,
    kinds: list[str] | None,
    exclude_keys: frozenset[str],
    *,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Pick content from the member's recommendations (``nurture.recommend``), best first.

    Args:
        session: The database session.
        member_id: The member.
        count: How many items at most.
        kinds: Only items of these kinds, when given.
        exclude_keys: Keys of items never to pick (already sent).
        now: When given, items that expired or events that started since the ranking are left
            out.

    Returns:
        Up to ``count`` items as JSON dicts (key, title, url, kind, summary, language, reason,
        score, event_start).
    """
    limit = _recommended_limit(count, kinds, exclude_keys)
    items = recommendations_for(session, member_id, limit, now=now)
    return _pick_recommended(items, count, kinds, exclude_keys)


def _recommended_limit(count: int, kinds: list[str] | None, exclude_keys: frozenset[str]) -> int:
    """How many of a member's recommendations ``recommended_content`` looks at, at most."""
    return count + len(exclude_keys) + (count * 5 if kinds else 0)


def _pick_recommended(
    items: Sequence[RecommendedItem],
    count: int,
    kinds: list[str] | None,
    exclude_keys: frozenset[str],
) -> list[dict[str, Any]]:
    """``recommended_content``'s picks among a member's recommendations (best first)."""
    return [
        ContentPick.from_item(item).model_dump(mode="json")
        for item in _chosen(items, count, kinds, exclude_keys)
    ]


def _chosen(
    items: Sequence[RecommendedItem],
    count: int,
    kinds: list[str] | None,
    exclude_keys: frozenset[str],
) -> list[RecommendedItem]:
    """The recommendations ``_pick_recommended`` picks, as they are."""
    chosen: list[RecommendedItem] = []
    for item in items[: _recommended_limit(count, kinds, exclude_keys)]:
        if item.key in exclude_keys or (kinds and item.kind not in kinds):
            continue
        chosen.append(item)
        if len(chosen) == count:
            break
    return chosen


class RecommendedContent:
    """``recommended_content`` at ``now``, the recommendations of a chunk's members read at once.

    ``load`` reads the recommendations of a chunk's members in one query (letting go of the
    chunk's before, so that what it holds is bounded by the chunk); a pick for one of them
    is then made as ``recommended_content`` makes it, without a query of its own. A member
    not loaded is read alone.

    Args:
        now: Items that expired or events that started by then are left out.
    """

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self._held: dict[int, list[RecommendedItem]] = {}
        self._loaded: frozenset[int] = frozenset()
        self._picks: dict[int, tuple[RecommendedItem, ContentPick]] = {}

    def load(self, session: Session, member_ids: Collection[int]) -> None:
        """Read the recommendations of ``member_ids`` (those held before are let go)."""
        self._held = recommendations_of(session, member_ids, now=self.now)
        self._loaded = frozenset(member_ids)
        self._picks = {}

    def __call__(
        self,
        session: Session,
        member_id: int,
        count: int,
        kinds: list[str] | None,
        exclude_keys: frozenset[str],
    ) -> list[dict[str, Any]]:
        """The member's picks, as ``recommended_content`` gives them."""
        if member_id in self._loaded:
            items = self._held.get(member_id, [])
        else:
            limit = _recommended_limit(count, kinds, exclude_keys)
            items = recommendations_for(session, member_id, limit, now=self.now)
        return _pick_recommended(items, count, kinds, exclude_keys)

    def picks(
        self,
        session: Session,
        member_id: int,
        count: int,
        kinds: list[str] | None,
        exclude_keys: frozenset[str],
    ) -> list[ContentPick]:
        """``ContentPick.from_item`` of each of the member's picks (``__call__``).

        A loaded recommendation picked again (by another slot or email of the chunk) gives the
        pick made the first time: the same value, not validated and stored again.
        """
        if member_id not in self._loaded:
            return [
                ContentPick.from_item(item)
                for item in self(session, member_id, count, kinds, exclude_keys)
            ]
        chosen = _chosen(self._held.get(member_id, []), count, kinds, exclude_keys)
        return [self._pick(item) for item in chosen]

    def _pick(self, item: RecommendedItem) -> ContentPick:
        """The pick of a loaded recommendation, made once per load.

        It equals what ``__call__`` then ``from_item`` make of it: its JSON form, validated
        again, gives the same values.
        """
        found = self._picks.get(id(item))
        if found is None:
            found = self._picks[id(item)] = (item, ContentPick.from_item(item))
        return found[1]


@dataclasses.dataclass
class ContentPicker:
    """Fills the content of emails at one moment (see the module docstring for the order).

    One picker serves every email of an engine pass or a preview: it reads the upcoming events
    and the library's tags once.

    Attributes:
        pick: Picks the member's recommended items (``recommended_content``, or a stand-in).
        now: The moment the emails are filled at.
    """

    pick: PickContent
    now: dt.datetime
    _events: list[ContentItem] | None = dataclasses.field(default=None, repr=False)
    _events_in: dict[str, list[ContentItem]] = dataclasses.field(default_factory=dict, repr=False)
    _tags: dict[str, set[str]] | None = dataclasses.field(default=None, repr=False)

    def load(self, session: Session, member_ids: Collection[int]) -> None:
        """Read at once what picks for these members need, when ``pick`` reads in bulk.

        ``RecommendedContent`` reads the members' recommendations in one query; another
        ``pick`` is left as it is.
        """
        if isinstance(self.pick, RecommendedContent):
            self.pick.load(session, member_ids)

    def message_context(
        self,
        session: Session,
        *,
        member_id: int,
        language: str | None,
        content: ContentSlot,
        slots: Mapping[str, ContentSlot],
        sent: set[str],
        trigger: Mapping[str, Any] | None = None,
        questionnaire_answered: bool = False,
        profile: MemberFacts | None = None,
    ) -> MessageContext:
        """The context of one email: its slots first, then its content picks.

        Args:
            session: The database session.
            member_id: The member.
            language: The member's language (or the one the email is shown in).
            content: The send step's ``content``.
            slots: The send step's named slots, in their order.
            sent: Keys the member was already sent; the keys picked are added to it.
            trigger: What the trigger recorded (the enrollment's context).
            questionnaire_answered: Whether the member answered the questionnaire.
            profile: What the templates read of the member (``member_profiles``).

        Returns:
            The message context.
        """
        filled: dict[str, list[ContentPick]] = {}
        for name, slot in slots.items():
            filled[name] = self.fill(session, member_id, language, slot, sent)
        items = self.fill(session, member_id, language, content, sent)
        return MessageContext(
            items=items,
            slots=filled,
            trigger=dict(trigger or {}),
            questionnaire_answered=questionnaire_answered,
            profile=profile or MemberFacts(),
        )

    def fill(
        self,
        session: Session,
        member_id: int,
        language: str | None,
        slot: ContentSlot,
        sent: set[str],
    ) -> list[ContentPick]:
        """The picks of one slot in the email's language, none in ``sent``; adds them to it.

        Args:
            session: The database session.
            member_id: The member.
            language: The member's language (reduced with ``resolve_language``).
            slot: The slot or the step's ``content``.
            sent: Keys not to pick (already sent, or taken by this email); updated.

        Returns:
            Up to ``slot.count`` picks.
        """
        if not slot.count:
            return []
        exclude = frozenset(sent)
        if slot.order == "upcoming":
            events = self._upcoming_events(session, resolve_language(language))
            picks = upcoming_content(session, language, slot, exclude, self.now, events=events)
        else:
            picks = self._recommended(session, member_id, resolve_language(language), slot, exclude)
        picks = picks[: slot.count]
        sent.update(pick.key for pick in picks)
        return picks

    def _recommended(
        self,
        session: Session,
        member_id: int,
        language: str,
        slot: ContentSlot,
        exclude: frozenset[str],
    ) -> list[ContentPick]:
        wanted = slot.count * 10 if slot.tags else slot.count
        if isinstance(self.pick, RecommendedContent):
            picked = self.pick.picks(session, member_id, wanted, slot.kinds, exclude)
        else:
            picked = [
                ContentPick.from_item(item)
                for item in self.pick(session, member_id, wanted, slot.kinds, exclude)
            ]
        picks = [
            pick for pick in picked if pick.key not in exclude and pick.language in (None, language)
        ]
        if slot.tags:
            tags = self._library_tags(session)
            picks = [pick for pick in picks if _has_a_tag(tags.get(pick.key), slot.tags)]
        return picks

    def _upcoming_events(self, session: Session, language: str) -> list[ContentItem]:
        """The upcoming events in ``language`` (read once, then kept by language)."""
        if self._events is None:
            self._events = upcoming_events(session, self.now)
        found = self._events_in.get(language)
        if found is None:
            found = self._events_in[language] = [
                item for item in self._events if item.language == language
            ]
        return found

    def _library_tags(self, session: Session) -> dict[str, set[str]]:
        if self._tags is None:
            self._tags = {
                key: {str(tag) for tag in tags or []}
                for key, tags in session.execute(select(ContentItem.key, ContentItem.tags)).tuples()
            }
        return self._tags


def _has_a_tag(tags: Iterable[Any] | None, wanted: Iterable[str] | None) -> bool:
    """Whether ``tags`` share one with ``wanted`` (case ignored); any tags do without ``wanted``."""
    if not wanted:
        return True
    lowered = {tag.lower() for tag in wanted}
    return any(str(tag).lower() in lowered for tag in tags or ())
