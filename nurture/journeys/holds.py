"""The sending rules applied to one email: does it go now, wait, or is it skipped?

``hold_for`` is the decision, on plain values: quiet hours first (the email waits for their
end, in the member's time zone), then the member's budget (it waits until the oldest email of
the rolling window leaves it, or is skipped when its journey says so). Transactional journeys
are outside both. ``BudgetLog`` remembers when each member's budgeted emails were queued,
read once per member per engine pass and extended as the pass queues more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Sequence
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.journeys.policy import SendingRules
from nurture.journeys.triggers import local_zone
from nurture.storage import among, plain_rows
from nurture.storage.models import Message

__all__ = ["BudgetLog", "HeldEmail", "Hold", "HoldReason", "hold_for"]

HoldReason = Literal["quiet_hours", "budget", "budget_skip"]
"""Why an email is held: the quiet hours or the budget (both wait), or skipped for the budget."""


@dataclasses.dataclass(frozen=True)
class HeldEmail:
    """An email the sending rules held back, reported to ``advance_journeys``' ``on_hold``.

    Attributes:
        journey: The journey key.
        step: The send step id.
        member_id: The member.
        reason: ``quiet_hours`` or ``budget`` (both wait), or ``budget_skip`` (skipped).
    """

    journey: str
    step: str
    member_id: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Hold:
    """The sending rules' answer for an email that does not go now.

    Attributes:
        reason: Why.
        until: When to try again (UTC); None when the email is skipped.
    """

    reason: HoldReason
    until: dt.datetime | None


def hold_for(
    rules: SendingRules | None,
    *,
    over_budget: Literal["wait", "skip"],
    time_zone: str | None,
    recent: Sequence[dt.datetime],
    now: dt.datetime,
) -> Hold | None:
    """Whether the sending rules hold a (non-transactional) email back at ``now``.

    Args:
        rules: The sending rules; None: no rule.
        over_budget: What the email does when the budget is spent (the step's, else the
            journey's choice).
        time_zone: The member's IANA time zone (UTC when unknown).
        recent: When the member's budgeted emails were queued (any order; older ones are
            ignored).
        now: The current time.

    Returns:
        None when the email goes now, else why it waits (and until when) or is skipped.
    """
    if rules is None:
        return None
    if rules.quiet_hours is not None:
        local = now.astimezone(local_zone(time_zone))
        if rules.quiet_hours.is_quiet(local):
            return Hold("quiet_hours", rules.quiet_hours.end_after(local))
    if rules.budget is not None:
        window = rules.budget.window_delta
        inside = sorted(moment for moment in recent if moment > now - window)
        if len(inside) >= rules.budget.messages:
            if over_budget == "skip":
                return Hold("budget_skip", None)
            # Room comes back when the oldest email of the window leaves it.
            return Hold("budget", inside[len(inside) - rules.budget.messages] + window)
    return None


class BudgetLog:
    """When each member's budgeted emails were queued, within the budget's window.

    Args:
        rules: The sending rules (nothing is read or kept without a budget).
        transactional_keys: Journeys whose emails do not count.
    """

    def __init__(self, rules: SendingRules | None, transactional_keys: Collection[str]) -> None:
        self.budget = rules.budget if rules is not None else None
        self.transactional_keys = sorted(transactional_keys)
        self._queued: dict[int, list[dt.datetime]] = {}

    def load(self, session: Session, member_ids: Sequence[int], now: dt.datetime) -> None:
        """Read the recent budgeted emails of these members, forgetting the others (one query).

        What it holds is bounded by a chunk, not the community: the emails recorded since the
        last load must be written (queued) by then, so that they are read again with the rest.

        Args:
            session: The database session.
            member_ids: The members.
            now: The current time.
        """
        if self.budget is None:
            return
        missing = sorted(set(member_ids))
        self._queued = {member_id: [] for member_id in missing}
        if not missing:
            return
        query = select(Message.member_id, Message.created_at).where(
            among(session, Message.member_id, missing),
            Message.created_at > now - self.budget.window_delta,
        )
        if self.transactional_keys:
            query = query.where(Message.journey_key.not_in(self.transactional_keys))
        for member_id, created_at in plain_rows(session, query).all():
            self._queued[member_id].append(created_at)

    def queued(self, member_id: int) -> list[dt.datetime]:
        """When the member's budgeted emails were queued (those read and recorded)."""
        return self._queued.get(member_id, [])

    def record(self, member_id: int, moment: dt.datetime) -> None:
        """Count an email queued for the member at ``moment``."""
        self._queued.setdefault(member_id, []).append(moment)
