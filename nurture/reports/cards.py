"""Segment cards: what a marketer reads about each active segment, read from the database.

A card gathers what segmentation stored on the segment (``Segment.label``, ``description`` and
``card``: size, share, distinctive answers, top terms, lifecycle mix, example members, centroid
shift) and computes only what is missing: the card fields of a segment that segmentation did
not describe (a rule-based segment), the example members' names and masked emails, and the
drift since the previous run from the ``SegmentMembership`` history.

Nothing is written: :func:`segment_cards` is a pure read.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.profiling.layout import QuestionnaireLike
from nurture.segmentation import distinctive_answers, top_terms
from nurture.segmentation.segments import _load_answers
from nurture.storage.models import (
    LifecycleStage,
    Member,
    MemberProfile,
    Segment,
    SegmentationRun,
    SegmentKind,
    SegmentMembership,
)

__all__ = [
    "DistinctiveFeature",
    "SegmentCard",
    "SegmentDrift",
    "mask_email",
    "member_display_name",
    "segment_cards",
]

EXAMPLES_PER_CARD = 3
"""Example members shown on a card."""

_IN_BATCH = 1000
"""Ids per ``IN (...)`` list: well below SQLite's and PostgreSQL's parameter limits."""


@dataclass(frozen=True)
class DistinctiveFeature:
    """An answer a segment gives more often than everyone.

    Attributes:
        question: The question key (``role``).
        option: The option key (``founder``).
        label: The option's English label (``Founder or executive``).
        share: Share of the segment's members who gave it (0..1).
        overall_share: Share of everyone who gave it (0..1).
        lift: ``share / overall_share``.
    """

    question: str
    option: str
    label: str
    share: float
    overall_share: float
    lift: float

    def describe(self) -> str:
        """One line, e.g. ``role = Founder or executive: 62% vs 20% (×3.1)``."""
        return (
            f"{self.question} = {self.label}: {self.share:.0%} vs {self.overall_share:.0%} "
            f"(×{self.lift:.1f})"
        )


@dataclass(frozen=True)
class SegmentDrift:
    """How a segment changed since the previous run of its kind.

    Every field is ``None`` (empty for the mappings) on the first run, when there is nothing to
    compare with.

    Attributes:
        previous_run_id: The run compared with, or ``None`` on the first run.
        previous_size: Members in the segment in that run (0 for a segment new in this run).
        size_change: ``size - previous_size``.
        came_from: ``{other segment key: members}`` now here that were there in the previous run.
        came_from_share: Share of this segment's members that came from another segment.
        new_members: Members here that were in no segment of this kind in the previous run.
        left_to: ``{other segment key: members}`` that were here and are there now.
        left_to_share: Share of the previous members that left for another segment.
        centroid_shift: Distance the centroid moved (clustering's scaled space), when known.
    """

    previous_run_id: int | None = None
    previous_size: int | None = None
    size_change: int | None = None
    came_from: dict[str, int] = field(default_factory=dict)
    came_from_share: float | None = None
    new_members: int | None = None
    left_to: dict[str, int] = field(default_factory=dict)
    left_to_share: float | None = None
    centroid_shift: float | None = None

    @property
    def first_run(self) -> bool:
        """Whether there is no previous run to compare with."""
        return self.previous_run_id is None

    def describe(self) -> dict[str, str]:
        """Readable drift: ``{"size", "came from", "left to", "centroid shift": text}``."""
        if self.previous_run_id is None or self.previous_size is None:
            return dict.fromkeys(("size", "came from", "left to", "centroid shift"), "first run")
        if self.previous_size == 0:
            size = f"new segment (+{self.size_change})"
            left = "new segment"
        else:
            size = (
                f"{self.size_change:+d} ({self.previous_size} → "
                f"{self.previous_size + (self.size_change or 0)})"
            )
            left = _moves(self.left_to_share, self.left_to, "to")
        came = _moves(self.came_from_share, self.came_from, "from")
        if self.new_members:
            came += f"; {self.new_members} not segmented before"
        if self.centroid_shift is not None:
            shift = f"{self.centroid_shift:.3f}"
        else:
            shift = "new segment" if self.previous_size == 0 else "no centroid"
        return {"size": size, "came from": came, "left to": left, "centroid shift": shift}


def _moves(share: float | None, counts: Mapping[str, int], preposition: str) -> str:
    if not counts or share is None:
        return "none"
    top = ", ".join(
        f"{key}: {count}" for key, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return f"{share:.0%} {preposition} other segments ({top})"


@dataclass(frozen=True)
class SegmentCard:
    """What a marketer reads about one segment.

    Attributes:
        key: Stable key (``seg-3``).
        label: Readable label (maybe edited by a marketer).
        kind: ``cluster``, ``rule``...
        description: The stored description (for a rule segment, often its rule).
        size: Members in the segment.
        share: ``size`` over the members it was drawn from (0..1).
        distinctive: Answers the segment gives more often than everyone, best first.
        top_terms: Most distinctive words of the members' free texts, best first.
        lifecycle: ``{lifecycle stage: members}``, in lifecycle order.
        examples: A few members as ``"Ada L. (a***@example.org)"``: never a full email.
        drift: Change since the previous run.
        run_id: The segmentation run the membership comes from.
        run_at: When that run happened.
        run_age_days: Days between that run and the cards' ``now``.
        label_edited: Whether a marketer edited the label.
    """

    key: str
    label: str
    kind: str
    description: str
    size: int
    share: float
    distinctive: list[DistinctiveFeature]
    top_terms: list[str]
    lifecycle: dict[str, int]
    examples: list[str]
    drift: SegmentDrift
    run_id: int | None = None
    run_at: dt.datetime | None = None
    run_age_days: float | None = None
    label_edited: bool = False

    def lifecycle_mix(self) -> list[tuple[str, float]]:
        """``(stage, share of the segment)`` for each stage present, in lifecycle order."""
        total = sum(self.lifecycle.values())
        return [(stage, count / total) for stage, count in self.lifecycle.items() if total]

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data (times in ISO 8601)."""
        data = asdict(self)
        data["run_at"] = self.run_at.isoformat() if self.run_at else None
        data["distinctive"] = [
            {**asdict(feature), "text": feature.describe()} for feature in self.distinctive
        ]
        data["drift"] = {**asdict(self.drift), "text": self.drift.describe()}
        return data


def mask_email(email: str) -> str:
    """An email address with its local part hidden: ``ada@example.org`` → ``a***@example.org``.

    Args:
        email: The address.

    Returns:
        The first character of the local part, ``***`` and the domain.
    """
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def member_display_name(first_name: str, last_name: str, email: str) -> str:
    """How a report names a member: ``Ada L. (a***@example.org)``.

    Args:
        first_name: The member's first name (may be empty).
        last_name: The member's last name (only its initial is shown).
        email: The member's email (masked).

    Returns:
        First name, last initial and masked email; the masked email alone without a first name.
    """
    masked = mask_email(email)
    first, last = first_name.strip(), last_name.strip()
    if not first:
        return masked
    name = f"{first} {last[:1]}." if last else first
    return f"{name} ({masked})"


def _current_runs(session: Session, segments: Sequence[Segment]) -> dict[int, int]:
    """The run each segment's current membership comes from.

    That is ``Segment.last_run_id``, or, for a segment without one, the latest run holding
    memberships of it.

    Args:
        session: Database session.
        segments: The segments.

    Returns:
        ``{segment id: run id}``; a segment without any membership is left out.
    """
    runs = {s.id: s.last_run_id for s in segments if s.last_run_id is not None}
    missing = [s.id for s in segments if s.last_run_id is None]
    if missing:
        rows = session.execute(
            select(SegmentMembership.segment_id, func.max(SegmentMembership.run_id))
            .where(SegmentMembership.segment_id.in_(missing))
            .group_by(SegmentMembership.segment_id)
        )
        runs.update({segment_id: run_id for segment_id, run_id in rows.tuples()})
    return runs


def _batched(values: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), _IN_BATCH):
        yield values[start : start + _IN_BATCH]


@dataclass
class _Memberships:
    """Memberships of some runs: who was in which segment."""

    members: dict[tuple[int, int], set[int]] = field(default_factory=lambda: defaultdict(set))
    distance: dict[tuple[int, int], dict[int, float | None]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    segments_of: dict[tuple[int, str], dict[int, set[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )

    @classmethod
    def load(cls, session: Session, run_ids: Iterable[int]) -> _Memberships:
        loaded = cls()
        runs = sorted(set(run_ids))
        if not runs:
            return loaded
        rows = session.execute(
            select(
                SegmentMembership.run_id,
                SegmentMembership.segment_id,
                SegmentMembership.member_id,
                SegmentMembership.distance,
                Segment.kind,
            )
            .join(Segment, Segment.id == SegmentMembership.segment_id)
            .where(SegmentMembership.run_id.in_(runs))
        )
        for run_id, segment_id, member_id, distance, kind in rows.tuples():
            loaded.members[run_id, segment_id].add(member_id)
            loaded.distance[run_id, segment_id][member_id] = distance
            loaded.segments_of[run_id, kind][member_id].add(segment_id)
        return loaded


def _previous_runs(session: Session, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """``{(kind, run id): the latest earlier run with memberships of that kind}``."""
    previous: dict[tuple[str, int], int] = {}
    for kind, run_id in sorted(wanted):
        found = session.scalar(
            select(func.max(SegmentMembership.run_id))
            .join(Segment, Segment.id == SegmentMembership.segment_id)
            .where(Segment.kind == kind, SegmentMembership.run_id < run_id)
        )
        if found is not None:
            previous[kind, run_id] = found
    return previous


def _drift(
    segment: Segment,
    run_id: int,
    previous_run_id: int | None,
    memberships: _Memberships,
    key_of: Mapping[int, str],
) -> SegmentDrift:
    if previous_run_id is None:
        return SegmentDrift()
    now_here = memberships.members.get((run_id, segment.id), set())
    before_here = memberships.members.get((previous_run_id, segment.id), set())
    before = memberships.segments_of.get((previous_run_id, segment.kind), {})
    now = memberships.segments_of.get((run_id, segment.kind), {})
    came_from: Counter[str] = Counter()
    moved_in = new_members = 0
    for member_id in now_here - before_here:
        elsewhere = before.get(member_id)
        if elsewhere:
            moved_in += 1
            came_from.update(key_of[other] for other in elsewhere)
        else:
            new_members += 1
    left_to: Counter[str] = Counter()
    moved_out = 0
    for member_id in before_here - now_here:
        elsewhere = now.get(member_id)
        if elsewhere:
            moved_out += 1
            left_to.update(key_of[other] for other in elsewhere)
    shift = (segment.card or {}).get("drift")
    return SegmentDrift(
        previous_run_id=previous_run_id,
        previous_size=len(before_here),
        size_change=len(now_here) - len(before_here),
        came_from=dict(came_from),
        came_from_share=round(moved_in / len(now_here), 3) if now_here else 0.0,
        new_members=new_members,
        left_to=dict(left_to),
        left_to_share=round(moved_out / len(before_here), 3) if before_here else 0.0,
        centroid_shift=float(shift) if isinstance(shift, int | float) else None,
    )


class _Everyone:
    """Answers, texts and lifecycle stages of every member, each loaded once when first needed.

    Only segments that segmentation did not describe need them.
    """

    def __init__(self, session: Session, questionnaire: QuestionnaireLike | None) -> None:
        self._session = session
        self._questionnaire = questionnaire
        self._answers: tuple[list[int], list[dict[str, Any]], dict[int, str]] | None = None
        self._stages: dict[int, str] | None = None
        self._count: int | None = None

    def _loaded(
        self, questionnaire: QuestionnaireLike
    ) -> tuple[list[int], list[dict[str, Any]], dict[int, str]]:
        if self._answers is None:
            ids = list(self._session.scalars(select(Member.id).order_by(Member.id)))
            answers, texts = _load_answers(self._session, questionnaire)
            self._answers = (ids, [answers.get(member_id, {}) for member_id in ids], texts)
        return self._answers

    def distinctive(self, members: set[int]) -> list[dict[str, Any]]:
        if self._questionnaire is None:
            return []
        ids, answers, _ = self._loaded(self._questionnaire)
        mask = np.fromiter((member_id in members for member_id in ids), dtype=bool, count=len(ids))
        return distinctive_answers(self._questionnaire, answers, mask)

    def top_terms(self, members: set[int]) -> list[str]:
        if self._questionnaire is None:
            return []
        ids, _, texts = self._loaded(self._questionnaire)
        inside = " ".join(texts[m] for m in ids if m in texts and m in members)
        outside = " ".join(texts[m] for m in ids if m in texts and m not in members)
        return top_terms([inside, outside])[0]

    def stages(self) -> dict[int, str]:
        if self._stages is None:
            rows = self._session.execute(
                select(MemberProfile.member_id, MemberProfile.lifecycle_stage)
            )
            self._stages = dict(rows.tuples().all())
        return self._stages

    def count(self) -> int:
        if self._count is None:
            self._count = self._session.scalar(select(func.count()).select_from(Member)) or 0
        return self._count


def _lifecycle_in_order(counts: Mapping[str, int]) -> dict[str, int]:
    order: dict[str, int] = {stage: index for index, stage in enumerate(LifecycleStage)}
    return {
        stage: int(counts[stage])
        for stage in sorted(counts, key=lambda s: (order.get(s, len(order)), s))
    }


def _example_ids(members: set[int], distances: Mapping[int, float | None]) -> list[int]:
    def closeness(member_id: int) -> tuple[bool, float, int]:
        distance = distances.get(member_id)
        return (distance is None, distance or 0.0, member_id)

    return sorted(members, key=closeness)[:EXAMPLES_PER_CARD]


def _display_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(ids))
    names: dict[int, str] = {}
    for batch in _batched(wanted):
        rows = session.execute(
            select(Member.id, Member.first_name, Member.last_name, Member.email).where(
                Member.id.in_(batch)
            )
        )
        for member_id, first, last, email in rows.tuples():
            names[member_id] = member_display_name(first or "", last or "", email)
    return names


def _card_fields(
    segment: Segment,
    members: set[int],
    distances: Mapping[int, float | None],
    everyone: _Everyone,
) -> dict[str, Any]:
    """A card's fields: those segmentation stored, the others computed from the members."""
    stored = dict(segment.card or {})
    size = len(members) if members else int(segment.size or 0)
    fields: dict[str, Any] = {
        "size": size,
        "share": stored.get("share"),
        "distinctive": stored.get("distinctive"),
        "top_terms": stored.get("top_terms"),
        "lifecycle": stored.get("lifecycle"),
        "examples": stored.get("examples"),
    }
    if fields["share"] is None:
        total = everyone.count()
        fields["share"] = round(size / total, 3) if total else 0.0
    if fields["distinctive"] is None:
        fields["distinctive"] = everyone.distinctive(members)
    if fields["top_terms"] is None:
        fields["top_terms"] = everyone.top_terms(members)
    if fields["lifecycle"] is None:
        stages = everyone.stages()
        fields["lifecycle"] = dict(Counter(stages.get(m, "unknown") for m in members))
    if fields["examples"] is None:
        fields["examples"] = _example_ids(members, distances)
    return fields


def _card(
    segment: Segment,
    fields: Mapping[str, Any],
    drift: SegmentDrift,
    names: Mapping[int, str],
    run_id: int | None,
    run_at: dt.datetime | None,
    now: dt.datetime,
) -> SegmentCard:
    """The card of a segment, from its fields."""
    return SegmentCard(
        key=segment.key,
        label=segment.label,
        kind=segment.kind,
        description=segment.description or "",
        size=fields["size"],
        share=float(fields["share"]),
        distinctive=[
            DistinctiveFeature(
                question=str(entry["question"]),
                option=str(entry["option"]),
                label=str(entry["label"]),
                share=float(entry["share"]),
                overall_share=float(entry["overall_share"]),
                lift=float(entry["lift"]),
            )
            for entry in fields["distinctive"]
        ],
        top_terms=[str(term) for term in fields["top_terms"]],
        lifecycle=_lifecycle_in_order(fields["lifecycle"]),
        examples=[names[m] for m in fields["examples"] if m in names],
        drift=drift,
        run_id=run_id,
        run_at=run_at,
        run_age_days=(round((now - run_at).total_seconds() / 86400, 1) if run_at else None),
        label_edited=bool((segment.card or {}).get("label_edited")),
    )


def segment_cards(
    session: Session,
    now: dt.datetime,
    *,
    questionnaire: QuestionnaireLike | None = None,
) -> list[SegmentCard]:
    """The card of every active segment, of any kind, from what the database holds.

    Fields segmentation stored in ``Segment.card`` are used as they are; the others are computed
    from the segment's current members. Distinctive answers and top terms of a segment without
    them (a rule-based segment) need ``questionnaire`` and compare the segment with every member;
    without it they stay empty.

    Args:
        session: Database session (only read).
        now: The time the cards are read at, for ``run_age_days``.
        questionnaire: The workspace questionnaire, to describe segments segmentation did not.

    Returns:
        Cluster segments first, then the other kinds; within a kind, largest first, then by key.
    """
    segments = list(session.scalars(select(Segment).where(Segment.active.is_(True))))
    if not segments:
        return []
    key_of = dict(session.execute(select(Segment.id, Segment.key)).tuples().all())
    run_of = _current_runs(session, segments)
    previous = _previous_runs(session, {(s.kind, run_of[s.id]) for s in segments if s.id in run_of})
    memberships = _Memberships.load(session, [*run_of.values(), *previous.values()])
    run_times = dict(
        session.execute(
            select(SegmentationRun.id, SegmentationRun.created_at).where(
                SegmentationRun.id.in_(set(run_of.values()))
            )
        )
        .tuples()
        .all()
    )
    everyone = _Everyone(session, questionnaire)

    drafts: list[tuple[Segment, dict[str, Any], SegmentDrift]] = []
    for segment in segments:
        run_id = run_of.get(segment.id)
        members = memberships.members.get((run_id, segment.id), set()) if run_id else set()
        distances = memberships.distance.get((run_id, segment.id), {}) if run_id else {}
        fields = _card_fields(segment, members, distances, everyone)
        previous_run = previous.get((segment.kind, run_id)) if run_id else None
        drift = _drift(segment, run_id, previous_run, memberships, key_of) if run_id else None
        drafts.append((segment, fields, drift or SegmentDrift()))

    names = _display_names(
        session, (member_id for _, fields, _ in drafts for member_id in fields["examples"])
    )
    cards = []
    for segment, fields, drift in drafts:
        run_id = run_of.get(segment.id)
        run_at = run_times.get(run_id) if run_id else None
        cards.append(_card(segment, fields, drift, names, run_id, run_at, now))
    cards.sort(key=lambda card: (card.kind != SegmentKind.CLUSTER, card.kind, -card.size, card.key))
    return cards
