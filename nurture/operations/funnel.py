"""The journey funnel: per journey and send step, how many emails went out and what came of them.

Counts span every version of a journey; its steps come in the order of its newest version's
definition, then any step only older versions had. :func:`journey_funnel` gives one row per send
step; :func:`journey_funnels` gives each journey whole, from entry through each step to its exits,
every count beside its share of the enrollments (for charts and artifacts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from nurture.journeys.journey_status import JourneyStatus, journey_status
from nurture.operations.shares import share_of
from nurture.storage.models import DeliveryStatus, Journey, Message, MessageStatus, ProviderEvent

__all__ = [
    "FUNNEL_STAGES",
    "FunnelRow",
    "FunnelStage",
    "JourneyFunnel",
    "journey_funnel",
    "journey_funnels",
]

DELIVERED = DeliveryStatus.DELIVERED
"""The ``Message.delivery_status`` and ``ProviderEvent.type`` of an email the provider delivered."""
OPEN = "open"
CLICK = "click"


@dataclass(frozen=True)
class FunnelRow:
    """One send step of one journey, from entry to goal.

    Attributes:
        journey: The journey's id.
        step: The send step's id.
        template: The template the step sends (None for a step only older versions had).
        entered: Enrollments of the journey, every version (the same on each of its rows).
        reached: Emails the step queued (any status): enrollments that got this far.
        sent: Emails the mail backend accepted.
        delivered: Sent emails the provider reports delivered (an open or click implies it).
        opened: Emails opened at least once (a click implies an open).
        clicked: Emails with at least one click.
        goal_reached: Enrollments of the journey that left because the member reached its goal
            (the same on each of its rows).
        suppressed: Emails not sent: suppressed address or no consent.
        failed: Emails that will not be sent (template error, permanent refusal...).
        open_rate: ``opened / sent`` (None before anything was sent).
        click_rate: ``clicked / sent`` (None before anything was sent).
    """

    journey: str
    step: str
    template: str | None
    entered: int
    reached: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    goal_reached: int
    suppressed: int
    failed: int
    open_rate: float | None
    click_rate: float | None


FUNNEL_STAGES = (
    "entered",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "goal_reached",
    "completed",
    "exited",
    "in_progress",
)
"""The stages of :meth:`JourneyFunnel.stages`: entry, each send step's four, then where members
are now (left at the goal, went through, left early for another reason, still in progress)."""


@dataclass(frozen=True)
class FunnelStage:
    """One bar of a journey's funnel.

    Attributes:
        stage: One of :data:`FUNNEL_STAGES`.
        step: The send step, for ``sent``, ``delivered``, ``opened`` and ``clicked``; else None.
        count: Enrollments (``entered`` and the last four stages) or emails (the step stages).
        share: ``count`` over the journey's enrollments (None when nobody entered).
    """

    stage: str
    step: str | None
    count: int
    share: float | None

    @property
    def label(self) -> str:
        """The stage in words: ``entered``, ``welcome: opened``, ``goal reached``."""
        words = self.stage.replace("_", " ")
        return f"{self.step}: {words}" if self.step is not None else words


@dataclass(frozen=True)
class JourneyFunnel:
    """One journey, every version together: who entered, each send step, how they left.

    Attributes:
        journey: The journey's id.
        name: Its readable name.
        entered: Its enrollments.
        in_progress: Enrollments still going.
        completed: Enrollments that went through to an exit step.
        goal_reached: Enrollments that left early because the member reached the goal.
        exited: Enrollments that left early for another reason (consent, suppression...).
        exit_reasons: Those by reason, most first.
        steps: Its send steps (:func:`journey_funnel`'s rows), in definition order.
    """

    journey: str
    name: str
    entered: int
    in_progress: int
    completed: int
    goal_reached: int
    exited: int
    exit_reasons: dict[str, int]
    steps: tuple[FunnelRow, ...]

    def stages(self) -> list[FunnelStage]:
        """The funnel, in :data:`FUNNEL_STAGES` order, each count beside its share of ``entered``.

        Returns:
            ``entered``; ``sent``, ``delivered``, ``opened``, ``clicked`` of each send step;
            then ``goal_reached``, ``completed``, ``exited`` and ``in_progress``.
        """

        def stage(name: str, count: int, step: str | None = None) -> FunnelStage:
            return FunnelStage(name, step, count, share_of(count, self.entered))

        stages = [stage("entered", self.entered)]
        for row in self.steps:
            stages.extend(
                stage(name, getattr(row, name), row.step)
                for name in ("sent", "delivered", "opened", "clicked")
            )
        stages.append(stage("goal_reached", self.goal_reached))
        stages.append(stage("completed", self.completed))
        stages.append(stage("exited", self.exited))
        stages.append(stage("in_progress", self.in_progress))
        return stages


def _send_steps(definition: Mapping[str, Any] | None) -> dict[str, str | None]:
    """``{step id: template}`` of a definition's send steps, in definition order."""
    steps = (definition or {}).get("steps") or []
    return {
        str(step["id"]): step.get("template")
        for step in steps
        if isinstance(step, Mapping) and step.get("type") == "send" and "id" in step
    }


def _newest_definitions(session: Session) -> dict[str, dict[str, Any]]:
    """``{journey key: definition of its newest version}``."""
    newest = (
        select(Journey.key, func.max(Journey.version).label("version"))
        .group_by(Journey.key)
        .subquery()
    )
    rows = session.execute(
        select(Journey.key, Journey.definition).join(
            newest, (newest.c.key == Journey.key) & (newest.c.version == Journey.version)
        )
    ).tuples()
    return {key: definition for key, definition in rows}


def _step_counts(session: Session) -> dict[tuple[str, str], dict[str, int]]:
    """``{(journey, step): {status or stage: emails}}``, with ``reached`` for every email."""
    engagement = (
        select(
            ProviderEvent.message_id.label("message_id"),
            func.max(case((ProviderEvent.type == DELIVERED, 1), else_=0)).label("delivered"),
            func.max(case((ProviderEvent.type.in_([OPEN, CLICK]), 1), else_=0)).label("opened"),
            func.max(case((ProviderEvent.type == CLICK, 1), else_=0)).label("clicked"),
        )
        .where(
            ProviderEvent.message_id.is_not(None),
            ProviderEvent.type.in_([DELIVERED, OPEN, CLICK]),
        )
        .group_by(ProviderEvent.message_id)
        .subquery()
    )
    delivered = or_(
        Message.delivery_status == DELIVERED,
        engagement.c.delivered == 1,
        engagement.c.opened == 1,
    )
    rows = session.execute(
        select(
            Message.journey_key,
            Message.step_id,
            Message.status,
            func.count(),
            func.sum(case((delivered, 1), else_=0)),
            func.sum(func.coalesce(engagement.c.opened, 0)),
            func.sum(func.coalesce(engagement.c.clicked, 0)),
        )
        .outerjoin(engagement, engagement.c.message_id == Message.id)
        .group_by(Message.journey_key, Message.step_id, Message.status)
    ).tuples()
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, step, status, count, delivered_count, opened, clicked in rows:
        found = counts[key, step]
        found["reached"] += count
        found[str(status)] += count
        found["delivered"] += int(delivered_count or 0)
        found["opened"] += int(opened or 0)
        found["clicked"] += int(clicked or 0)
    return counts


def _funnel_rows(
    counts: Mapping[tuple[str, str], Mapping[str, int]],
    journeys: Mapping[str, JourneyStatus],
    definitions: Mapping[str, Mapping[str, Any]],
) -> list[FunnelRow]:
    """One row per journey and send step, from the counts, progress and definitions read."""
    steps_of: dict[str, dict[str, str | None]] = {
        key: _send_steps(definition) for key, definition in definitions.items()
    }
    for key, step in sorted(counts):
        steps_of.setdefault(key, {}).setdefault(step, None)
    funnel: list[FunnelRow] = []
    for key in sorted(steps_of):
        status = journeys.get(key)
        entered = sum(version.enrolled for version in status.versions) if status else 0
        goal = sum(version.exited_goal for version in status.versions) if status else 0
        for step, template in steps_of[key].items():
            found = counts.get((key, step), {})
            sent = found.get(MessageStatus.SENT.value, 0)
            funnel.append(
                FunnelRow(
                    journey=key,
                    step=step,
                    template=template,
                    entered=entered,
                    reached=found.get("reached", 0),
                    sent=sent,
                    delivered=found.get("delivered", 0),
                    opened=found.get("opened", 0),
                    clicked=found.get("clicked", 0),
                    goal_reached=goal,
                    suppressed=found.get(MessageStatus.SUPPRESSED.value, 0),
                    failed=found.get(MessageStatus.FAILED.value, 0),
                    open_rate=share_of(found.get("opened", 0), sent),
                    click_rate=share_of(found.get("clicked", 0), sent),
                )
            )
    return funnel


def journey_funnel(session: Session) -> list[FunnelRow]:
    """Count, for each journey and send step, the emails at each stage of the funnel.

    Args:
        session: The database session; nothing is written.

    Returns:
        One row per journey and send step: journeys by id, steps in definition order.
    """
    return _funnel_rows(
        _step_counts(session),
        {status.journey_key: status for status in journey_status(session)},
        _newest_definitions(session),
    )


def journey_funnels(session: Session) -> list[JourneyFunnel]:
    """Each journey's funnel: its enrollments, its send steps' emails, how its members left.

    Args:
        session: The database session; nothing is written.

    Returns:
        One funnel per journey that ran or sent an email, by id.
    """
    journeys = {status.journey_key: status for status in journey_status(session)}
    rows_of: dict[str, list[FunnelRow]] = defaultdict(list)
    for row in _funnel_rows(_step_counts(session), journeys, _newest_definitions(session)):
        rows_of[row.journey].append(row)
    return [
        _journey_funnel(key, journeys.get(key), rows_of.get(key, []))
        for key in sorted(set(journeys) | set(rows_of))
    ]


def _journey_funnel(key: str, status: JourneyStatus | None, rows: list[FunnelRow]) -> JourneyFunnel:
    """One journey's funnel from its progress and its send steps' rows."""
    versions = status.versions if status is not None else ()
    reasons: dict[str, int] = defaultdict(int)
    for version in versions:
        for reason, count in version.exited_other.items():
            reasons[reason] += count
    return JourneyFunnel(
        journey=key,
        name=status.name if status is not None else key,
        entered=sum(version.enrolled for version in versions),
        in_progress=sum(version.active for version in versions),
        completed=sum(version.completed for version in versions),
        goal_reached=sum(version.exited_goal for version in versions),
        exited=sum(reasons.values()),
        exit_reasons=dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
        steps=tuple(rows),
    )
