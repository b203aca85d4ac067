"""Report data made by hand, for the chart and page tests that need no database."""

from __future__ import annotations

import datetime as dt

from nurture.journeys.engine import JourneySummary
from nurture.journeys.policy import Budget
from nurture.journeys.simulate import HeldDay, HeldEmails, SimulatedSend, SimulationReport
from nurture.operations import DeliveryDay, FunnelRow, JourneyFunnel, share_of
from nurture.operations.delivery import OUTCOMES
from nurture.reports import MapPoint, SegmentCard, SegmentDrift, SegmentSize

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def card(key: str, label: str, size: int, share: float, **lifecycle: int) -> SegmentCard:
    return SegmentCard(
        key=key,
        label=label,
        kind="cluster",
        description="",
        size=size,
        share=share,
        distinctive=[],
        top_terms=[],
        lifecycle=lifecycle,
        examples=[],
        drift=SegmentDrift(),
    )


CARDS = [
    card("seg-1", "Organisers <&> friends", 3, 0.6, active=2, at_risk=1),
    card("seg-2", "Newcomers", 2, 0.4, new=1, onboarding=1),
]
POINTS = [
    MapPoint(-2.0, 0.5, "seg-1"),
    MapPoint(-1.0, 0.0, "seg-1"),
    MapPoint(-1.5, 1.0, "seg-1"),
    MapPoint(2.0, -0.5, "seg-2"),
    MapPoint(1.0, 0.0, "seg-2"),
]
HISTORY = [
    SegmentSize(1, START, "seg-1", "Organisers <&> friends", "cluster", 2, 0.5),
    SegmentSize(1, START, "seg-2", "Newcomers", "cluster", 2, 0.5),
    SegmentSize(2, START + dt.timedelta(days=1), "seg-1", "Organisers", "cluster", 3, 0.6),
    SegmentSize(2, START + dt.timedelta(days=1), "seg-2", "Newcomers", "cluster", 2, 0.4),
    SegmentSize(2, START + dt.timedelta(days=1), "old", "Gone", "rule", 1, 0.2),
]


def step(step_id: str, reached: int, sent: int, delivered: int, opened: int) -> FunnelRow:
    return FunnelRow(
        journey="welcome",
        step=step_id,
        template=f"welcome_{step_id}",
        entered=2000,
        reached=reached,
        sent=sent,
        delivered=delivered,
        opened=opened,
        clicked=opened // 2,
        goal_reached=300,
        suppressed=reached - sent,
        failed=0,
        open_rate=share_of(opened, sent),
        click_rate=share_of(opened // 2, sent),
    )


FUNNEL = JourneyFunnel(
    journey="welcome",
    name="Welcome <new> members",
    entered=2000,
    in_progress=700,
    completed=900,
    goal_reached=300,
    exited=100,
    exit_reasons={"consent": 80, "suppressed": 20},
    steps=(step("send_welcome", 2000, 1990, 1900, 500), step("send_tips", 1200, 1200, 1150, 300)),
)


def delivery_day(day: str, **counts: int) -> DeliveryDay:
    by_outcome = {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}
    total = sum(by_outcome.values())
    return DeliveryDay(
        day=day,
        by_outcome=by_outcome,
        shares={outcome: share_of(count, total) for outcome, count in by_outcome.items()},
        total=total,
        bounced=counts.get("bounced", 0),
    )


DAYS = [
    delivery_day("2026-03-01"),
    delivery_day("2026-03-02", sent=498, suppressed=2, bounced=3),
    delivery_day("2026-03-03", sent=10, failed=5, unknown=1),
]


def send(hours: float, member_id: int, journey: str) -> SimulatedSend:
    return SimulatedSend(
        at=START + dt.timedelta(hours=hours),
        member_id=member_id,
        email=f"member{member_id}@example.org",
        time_zone="Europe/Paris",
        journey_key=journey,
        step_id=f"send_{journey}",
    )


SIMULATION = SimulationReport(
    start=START,
    end=START + dt.timedelta(days=3),
    tick=dt.timedelta(hours=1),
    trigger_every=dt.timedelta(hours=6),
    member_ids=None,
    journeys=("welcome", "digest"),
    sends=(send(1, 1, "welcome"), send(2, 2, "welcome"), send(30, 1, "digest")),
    entered={"welcome": 2, "digest": 1},
    held=(HeldEmails("welcome", budget_deferred=1, quiet_deferred=2, members=(1, 2)),),
    totals=JourneySummary(enrolled=3, messages_queued=3, budget_deferred=1, quiet_deferred=2),
    budget=Budget(messages=3, window="7d"),
    window_peaks={1: 2, 2: 1},
    passes=12,
    held_daily=(
        HeldDay(START.date(), "welcome", quiet_deferred=2),
        HeldDay(START.date() + dt.timedelta(days=1), "welcome", budget_deferred=1),
    ),
)
