"""The database schema, as SQLAlchemy 2 typed ORM models.

Definitions are kept apart from progress: a ``Journey`` row is one version of a journey
definition, an ``Enrollment`` is one member's progress through it, a ``Message`` is one send
step of one enrollment (unique: the unit of exactly-once delivery).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any, cast

import numpy as np
from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    false,
    or_,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "ActivityEvent",
    "Answer",
    "ApiKey",
    "ApiRequest",
    "ApiScope",
    "AssignmentState",
    "Base",
    "CommunityMilestone",
    "ConsentStatus",
    "ContentItem",
    "DeliveryStatus",
    "EmbeddingCacheEntry",
    "Enrollment",
    "EnrollmentState",
    "ExitReason",
    "Journey",
    "LifecycleStage",
    "MatchRun",
    "Member",
    "MemberProfile",
    "Message",
    "MessageStatus",
    "ProviderEvent",
    "Recommendation",
    "Segment",
    "SegmentAssignment",
    "SegmentDeparture",
    "SegmentKind",
    "SegmentMembership",
    "SegmentationRun",
    "Suppression",
    "SuppressionReason",
    "UTCDateTime",
    "Vector",
    "WaitReason",
    "table_of",
    "utcnow",
]


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime stored in UTC; SQLite gives naive values back, made aware here."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        """The value stored: an aware datetime in UTC (a naive one is refused)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: nurture stores timezone-aware times")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        """The value read: an aware datetime in UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Vector(TypeDecorator[np.ndarray]):
    """A 1-D float32 numpy vector stored as raw bytes (portable across SQLite and PostgreSQL)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: np.ndarray | None, dialect: Any) -> bytes | None:
        """The value stored: the vector's float32 bytes."""
        if value is None:
            return None
        return np.ascontiguousarray(value, dtype=np.float32).tobytes()

    def process_result_value(self, value: bytes | None, dialect: Any) -> np.ndarray | None:
        """The value read: a float32 vector."""
        if value is None:
            return None
        return np.frombuffer(value, dtype=np.float32).copy()

    def compare_values(self, x: Any, y: Any) -> bool:
        """Whether two vectors are equal (``==`` on arrays is elementwise, or fails on shapes)."""
        if x is None or y is None:
            return x is y
        return bool(np.array_equal(np.asarray(x), np.asarray(y)))


def _status_enum(enum_class: type[enum.StrEnum], length: int = 20) -> Enum:
    """A status column stored as its string value (a VARCHAR, no native database enum).

    Reading a value the enum lacks raises ``LookupError``: a new value needs a new member.
    """
    return Enum(
        enum_class,
        native_enum=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
    )


intpk = Annotated[int, mapped_column(Integer, primary_key=True, autoincrement=True)]
created_at = Annotated[dt.datetime, mapped_column(UTCDateTime(), default=utcnow, nullable=False)]
member_fk = Annotated[
    int, mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True, nullable=False)
]
member_fk_leading = Annotated[
    int, mapped_column(ForeignKey("members.id", ondelete="CASCADE"), nullable=False)
]
"""A member's id in a table whose unique key or index begins with it: that one serves lookups
by member and the cascade, so the column has no index of its own (it would only cost writes)."""


class Base(DeclarativeBase):
    """Declarative base of every nurture table."""

    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


def table_of(model: type[Base]) -> Table:
    """The Core ``Table`` behind an ORM model, for bulk statements."""
    return cast(Table, model.__table__)


class ConsentStatus(enum.StrEnum):
    """A member's marketing consent: only ``granted`` members get non-transactional emails."""

    GRANTED = "granted"
    DENIED = "denied"
    UNKNOWN = "unknown"


class Member(Base):
    """A community member."""

    __tablename__ = "members"

    id: Mapped[intpk]
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(8), default="en")
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    birthday: Mapped[dt.date | None]
    joined_at: Mapped[dt.datetime]
    consent_status: Mapped[ConsentStatus] = mapped_column(
        _status_enum(ConsentStatus), default=ConsentStatus.GRANTED
    )
    consent_source: Mapped[str | None] = mapped_column(String(200))
    unsubscribed_categories: Mapped[list[Any]] = mapped_column(default=list)
    """Journey categories (``care``, ``promotion``) the member asked not to get emails of."""
    paused_until: Mapped[dt.datetime | None]
    """Until when the member paused every email but transactional ones (preference page)."""
    best_hour: Mapped[int | None] = mapped_column(SmallInteger)
    """The member's best hour of their day for an email (0-23), recomputed nightly."""
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[created_at]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    answers: Mapped[list[Answer]] = relationship(
        back_populates="member", cascade="all, delete-orphan", passive_deletes=True
    )


class Answer(Base):
    """A member's answer to one questionnaire question (a string, a list of strings or a number)."""

    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("member_id", "question_key"),
        Index("ix_answers_answered_at", "answered_at"),  # answers edited since a nightly
    )

    id: Mapped[intpk]
    member_id: Mapped[member_fk_leading]
    question_key: Mapped[str] = mapped_column(String(100))
    value: Mapped[Any] = mapped_column(JSON)
    answered_at: Mapped[created_at]

    member: Mapped[Member] = relationship(back_populates="answers")


class ActivityEvent(Base):
    """Something a member did: a post, a comment, an event attended, an email opened or clicked.

    ``content_key`` names the content item involved, when there is one. ``idempotency_key`` makes
    a re-import of the same event a no-op.
    """

    __tablename__ = "activity_events"
    __table_args__ = (
        Index("ix_activity_member_time", "member_id", "occurred_at"),
        # Events of some types within a time range (activity windows a rule reads).
        Index("ix_activity_type_time", "type", "occurred_at"),
    )

    id: Mapped[intpk]
    member_id: Mapped[member_fk_leading]
    type: Mapped[str] = mapped_column(String(50))
    occurred_at: Mapped[dt.datetime]
    content_key: Mapped[str | None] = mapped_column(String(200), index=True)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)


class ContentItem(Base):
    """A content item of the library (article, event, webinar...), loaded from a Markdown file."""

    __tablename__ = "content_items"

    id: Mapped[intpk]
    key: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    url: Mapped[str] = mapped_column(String(2000))
    kind: Mapped[str] = mapped_column(String(50))
    language: Mapped[str] = mapped_column(String(8))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    summary: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[dt.datetime | None]
    event_start: Mapped[dt.datetime | None]
    event_time_zone: Mapped[str | None] = mapped_column(String(64))
    """The IANA zone an event is held in (the library's ``time_zone``)."""
    venue: Mapped[str | None] = mapped_column(String(500))
    """Where an in-person event takes place; None for an online one."""
    expires_at: Mapped[dt.datetime | None]
    text_hash: Mapped[str] = mapped_column(String(64))
    source_path: Mapped[str] = mapped_column(String(1000))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @classmethod
    def live_at(cls, now: dt.datetime) -> ColumnElement[bool]:
        """The SQL condition of an item published and not expired at ``now``."""
        return and_(
            or_(cls.published_at.is_(None), cls.published_at <= now),
            or_(cls.expires_at.is_(None), cls.expires_at > now),
        )


class EmbeddingCacheEntry(Base):
    """One embedded text: the vector a model gave for a text, keyed by model and text hash."""

    __tablename__ = "embedding_cache"

    model: Mapped[str] = mapped_column(String(300), primary_key=True)
    text_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int]
    vector: Mapped[np.ndarray] = mapped_column(Vector())
    created_at: Mapped[created_at]


class LifecycleStage(enum.StrEnum):
    """Where a member stands, from tenure and recent activity (``nurture.profiling.lifecycle``)."""

    NEW = "new"
    ONBOARDING = "onboarding"
    ACTIVE = "active"
    CONTRIBUTOR = "contributor"
    AMBASSADOR = "ambassador"
    AT_RISK = "at_risk"
    DORMANT = "dormant"


class MemberProfile(Base):
    """A member's computed profile: features for segmentation, interests for matching."""

    __tablename__ = "member_profiles"
    # A warm nightly asks which profiles changed: the indexes answer without reading the rows,
    # whose vectors are most of the table.
    __table_args__ = (
        Index("ix_member_profiles_computed_at", "computed_at"),
        Index("ix_member_profiles_layout", "feature_names_hash"),
    )

    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    features: Mapped[np.ndarray] = mapped_column(Vector())
    interest: Mapped[np.ndarray | None] = mapped_column(Vector())
    lifecycle_stage: Mapped[LifecycleStage] = mapped_column(_status_enum(LifecycleStage))
    feature_names_hash: Mapped[str] = mapped_column(String(64))
    computed_at: Mapped[created_at]


class SegmentationRun(Base):
    """One run of the clustering: what was fitted and how well."""

    __tablename__ = "segmentation_runs"

    id: Mapped[intpk]
    algorithm: Mapped[str] = mapped_column(String(50))
    n_segments: Mapped[int]
    quality: Mapped[float | None] = mapped_column(Float)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[created_at]


class SegmentKind(enum.StrEnum):
    """How a segment is made."""

    CLUSTER = "cluster"
    """Found by clustering; its key is ``seg-<number>``, its ``centroid`` the mean raw feature
    vector of its members."""
    RULE = "rule"
    """Declared by a marketer by rule in ``segments.yaml``."""


class Segment(Base):
    """A segment with a stable identity across runs, a readable label and its centroid.

    ``kind`` says whether clustering found it or a marketer declared it by rule
    (:class:`SegmentKind`). ``label_edited`` marks a label a marketer chose: segmentation never
    overwrites it.
    """

    __tablename__ = "segments"

    id: Mapped[intpk]
    key: Mapped[str] = mapped_column(String(100), unique=True)
    label: Mapped[str] = mapped_column(String(300))
    label_edited: Mapped[bool] = mapped_column(default=False, server_default=false())
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[SegmentKind] = mapped_column(
        _status_enum(SegmentKind), default=SegmentKind.CLUSTER
    )
    centroid: Mapped[np.ndarray | None] = mapped_column(Vector())
    interest: Mapped[np.ndarray | None] = mapped_column(Vector())
    size: Mapped[int] = mapped_column(default=0)
    card: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(default=True)
    first_run_id: Mapped[int | None] = mapped_column(ForeignKey("segmentation_runs.id"))
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("segmentation_runs.id"))
    created_at: Mapped[created_at]


class SegmentMembership(Base):
    """A member's place in a segment for one segmentation run (history is kept)."""

    __tablename__ = "segment_memberships"
    __table_args__ = (UniqueConstraint("run_id", "member_id", "segment_id"),)

    id: Mapped[intpk]
    run_id: Mapped[int] = mapped_column(
        ForeignKey("segmentation_runs.id", ondelete="CASCADE"), index=True
    )
    member_id: Mapped[member_fk]
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    distance: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[created_at]


class AssignmentState(enum.StrEnum):
    """Whether a member's place in a segment counts yet."""

    EFFECTIVE = "effective"
    PENDING = "pending"


class SegmentAssignment(Base):
    """A member's place in a segment as journeys see it: effective, or pending for a while.

    Clustering may put a member in another cluster segment from one run to the next; the move
    only counts once it has held for the configured time: until then the new segment is
    ``pending`` (``since`` is when it was first seen) and the old one stays ``effective``. A
    member has at most one effective and one pending cluster segment, and one effective row per
    rule segment they match. ``since`` of an effective row is when the member entered the
    segment: what journeys triggered by segment entry read.
    """

    __tablename__ = "segment_assignments"
    __table_args__ = (
        UniqueConstraint("member_id", "segment_id"),
        Index("ix_segment_assignments_segment_state", "segment_id", "state"),
    )

    id: Mapped[intpk]
    member_id: Mapped[member_fk_leading]
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    state: Mapped[AssignmentState] = mapped_column(
        _status_enum(AssignmentState), default=AssignmentState.EFFECTIVE
    )
    since: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MatchRun(Base):
    """One run of the content matcher."""

    __tablename__ = "match_runs"

    id: Mapped[intpk]
    model: Mapped[str] = mapped_column(String(300))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[created_at]


class Recommendation(Base):
    """A content item recommended to a member, with its rank, score and a readable reason."""

    __tablename__ = "recommendations"
    __table_args__ = (
        UniqueConstraint("member_id", "content_item_id"),
        Index("ix_recommendations_member_rank", "member_id", "rank"),
    )

    id: Mapped[intpk]
    member_id: Mapped[member_fk_leading]
    content_item_id: Mapped[int] = mapped_column(ForeignKey("content_items.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("match_runs.id", ondelete="SET NULL"))
    rank: Mapped[int]
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[created_at]


class Journey(Base):
    """One version of a journey definition (a changed definition gets a new version)."""

    __tablename__ = "journeys"
    __table_args__ = (
        UniqueConstraint("key", "version"),
        UniqueConstraint("key", "definition_hash"),
    )

    id: Mapped[intpk]
    key: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int]
    definition_hash: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]]
    source_path: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[created_at]


class EnrollmentState(enum.StrEnum):
    """Where an enrollment stands."""

    ACTIVE = "active"
    COMPLETED = "completed"
    EXITED = "exited"


class ExitReason(enum.StrEnum):
    """Why an exited enrollment stopped."""

    GOAL = "goal"
    """The member reached the journey's goal."""
    CONSENT = "consent"
    """The member's consent or preferences no longer allow the journey's emails."""
    MISSING_STEP = "missing_step"
    """The enrollment stood at a step the journey's definition no longer has."""
    HOLDOUT = "holdout"
    """The member was held out as the journey's control group: enrolled, sent nothing."""


class WaitReason(enum.StrEnum):
    """Why an active enrollment is held at a send step."""

    BUDGET = "budget"
    QUIET_HOURS = "quiet_hours"
    BEST_HOUR = "best_hour"
    """Waiting for the member's best hour of day (a send step ``at: best_hour``)."""


class Enrollment(Base):
    """A member's progress through one version of a journey."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("journey_key", "member_id", "occurrence"),
        Index("ix_enrollments_due", "state", "next_action_at"),
    )

    id: Mapped[intpk]
    journey_id: Mapped[int] = mapped_column(ForeignKey("journeys.id"), index=True)
    journey_key: Mapped[str] = mapped_column(String(100))
    member_id: Mapped[member_fk]
    occurrence: Mapped[int] = mapped_column(default=1)
    state: Mapped[EnrollmentState] = mapped_column(
        _status_enum(EnrollmentState),
        default=EnrollmentState.ACTIVE,
    )
    current_step: Mapped[str | None] = mapped_column(String(100))
    next_action_at: Mapped[dt.datetime | None]
    enrolled_at: Mapped[created_at]
    finished_at: Mapped[dt.datetime | None]
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """What the trigger recorded (the event to thank for, the topic, the threshold...)."""
    exit_reason: Mapped[ExitReason | None] = mapped_column(_status_enum(ExitReason, 30))
    """Why an exited enrollment stopped."""
    waiting_on: Mapped[WaitReason | None] = mapped_column(_status_enum(WaitReason, 30))
    """Why an active enrollment is held at a send step."""
    arm: Mapped[str | None] = mapped_column(String(100))
    """The experiment arm: ``control`` (held out, sent nothing) or the split variant drawn."""


class MessageStatus(enum.StrEnum):
    """The states a message moves through on its way to the member."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    UNKNOWN = "unknown"


class DeliveryStatus(enum.StrEnum):
    """The provider's latest word on a sent email (its event type, ``ProviderEvent.type``)."""

    PROCESSED = "processed"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCE = "bounce"
    DROPPED = "dropped"


class Message(Base):
    """One send step of one enrollment: rendered and delivered exactly once."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_id"),
        Index("ix_messages_status_due", "status", "scheduled_at"),
        Index("ix_messages_member_created", "member_id", "created_at"),
    )

    id: Mapped[intpk]
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(100))
    member_id: Mapped[member_fk_leading]
    journey_key: Mapped[str] = mapped_column(String(100), index=True)
    template: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(500))
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[MessageStatus] = mapped_column(
        _status_enum(MessageStatus),
        default=MessageStatus.QUEUED,
    )
    scheduled_at: Mapped[dt.datetime]
    created_at: Mapped[created_at]
    sent_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    backend: Mapped[str | None] = mapped_column(String(50))
    """The mail backend it was last handed to (recorded with the hand-off), then the one that
    accepted it."""
    provider_message_id: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[dt.datetime | None]
    """When a worker moved the message to ``sending`` (recovery looks at old claims)."""
    handed_over_at: Mapped[dt.datetime | None]
    """When the worker of the current claim handed the message to the mail backend, committed
    before the backend's call; None: claimed but never handed over, so recovery may re-queue it
    (each claim clears it)."""
    delivery_status: Mapped[DeliveryStatus | None] = mapped_column(_status_enum(DeliveryStatus, 30))
    """The provider's latest word on it."""


class ProviderEvent(Base):
    """An event reported by a mail provider (delivered, open, click, bounce...), deduplicated."""

    __tablename__ = "provider_events"

    id: Mapped[intpk]
    provider: Mapped[str] = mapped_column(String(50))
    event_id: Mapped[str] = mapped_column(String(300), unique=True)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    type: Mapped[str] = mapped_column(String(50))
    occurred_at: Mapped[dt.datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[created_at]


class CommunityMilestone(Base):
    """A community size reached (100, 1 000, 5 000 members): recorded once, ever."""

    __tablename__ = "community_milestones"

    threshold: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    reached_at: Mapped[dt.datetime]
    member_count: Mapped[int]
    celebrated: Mapped[bool] = mapped_column(default=True)


class SegmentDeparture(Base):
    """A member leaving a segment they were effectively in: what ``segment_left`` triggers read."""

    __tablename__ = "segment_departures"
    __table_args__ = (Index("ix_segment_departures_segment_time", "segment_id", "left_at"),)

    id: Mapped[intpk]
    member_id: Mapped[member_fk]
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    left_at: Mapped[dt.datetime]


class SuppressionReason(enum.StrEnum):
    """Why an address is suppressed."""

    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    MANUAL = "manual"
    ERASED = "erased"
    """The member asked to be forgotten: their data is gone, only this hash remains."""


class Suppression(Base):
    """An address that must never be mailed again, kept as a salted hash of the address."""

    __tablename__ = "suppressions"

    id: Mapped[intpk]
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[SuppressionReason] = mapped_column(_status_enum(SuppressionReason, 50))
    source: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[created_at]


class ApiScope(enum.StrEnum):
    """What an API key may do: read members, or also write members, events and answers."""

    READ = "read"
    WRITE = "write"


class ApiKey(Base):
    """A key of the HTTP API: only its SHA-256 is kept; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    """The key's public part (``nk_<prefix>_...``): finds the key, and names it in lists."""
    key_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[ApiScope] = mapped_column(_status_enum(ApiScope))
    created_at: Mapped[created_at]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class ApiRequest(Base):
    """A request the API accepted, by its idempotency key: a replay answers the same, again."""

    __tablename__ = "api_requests"
    __table_args__ = (UniqueConstraint("api_key_id", "idempotency_key"),)

    id: Mapped[intpk]
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    route: Mapped[str] = mapped_column(String(100))
    body_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the body: the same key with another body is refused."""
    status_code: Mapped[int]
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[created_at]
