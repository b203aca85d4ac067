"""Rules across journeys: budget, quiet hours and backfill guard, from ``sending.yaml``.

Every journey shares one budget per member (at most ``budget.messages`` emails over a rolling
``budget.window``); an email that does not fit waits for room or is skipped, as its journey
says. No email is queued during the member's quiet hours (in their own time zone): it waits for
the end of them. Transactional journeys are outside both rules and do not use the budget.
Consent and suppression are checked by the engine at enrolment and before every email.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from nurture.errors import JourneyValidationError
from nurture.journeys.models import Duration, parse_duration
from nurture.marketer_files.located_yaml import DEFAULT_YAML_LIMITS, YamlLimits
from nurture.marketer_files.model_files import ModelFile, load_model_file

__all__ = [
    "BackfillLimit",
    "Budget",
    "QuietHours",
    "SendingRules",
    "load_sending_rules",
    "read_sending_rules",
]

_CLOCK_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _check_clock(text: str) -> str:
    if not _CLOCK_RE.match(text):
        raise PydanticCustomError(
            "clock", "expected a time of day like '21:00', found {text!r}", {"text": text}
        )
    return text


Clock = Annotated[str, AfterValidator(_check_clock), Field(examples=["21:00", "08:00"])]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Model):
    """At most ``messages`` emails per member over any rolling ``window``, all journeys together."""

    messages: int = Field(default=3, ge=1, description="Emails allowed in one window.")
    window: Duration = Field(default="7d", description="The rolling window, e.g. 7d.")

    @property
    def window_delta(self) -> dt.timedelta:
        """The window as a ``timedelta``."""
        return parse_duration(self.window)


class QuietHours(_Model):
    """Hours of the member's night when no email is queued (their time zone)."""

    start: Clock = Field(default="21:00", description="Local time the quiet hours begin.")
    end: Clock = Field(default="08:00", description="Local time they end (next day if earlier).")

    def _minutes(self, text: str) -> int:
        hours, minutes = text.split(":")
        return int(hours) * 60 + int(minutes)

    def is_quiet(self, local: dt.datetime) -> bool:
        """Whether a local wall-clock time falls in the quiet hours."""
        start, end, now = (
            self._minutes(self.start),
            self._minutes(self.end),
            local.hour * 60 + local.minute,
        )
        if start == end:
            return False
        if start < end:
            return start <= now < end
        return now >= start or now < end

    def end_after(self, local: dt.datetime) -> dt.datetime:
        """The end (in UTC) of the quiet hours that ``local`` (aware, member's zone) falls in."""
        hours, minutes = divmod(self._minutes(self.end), 60)
        candidate = local.replace(hour=hours, minute=minutes, second=0, microsecond=0)
        if candidate <= local:
            candidate = (candidate.replace(tzinfo=None) + dt.timedelta(days=1)).replace(
                tzinfo=local.tzinfo
            )
        # A wall time in a daylight-saving gap is normalised by the round trip through UTC.
        return candidate.astimezone(dt.UTC)


class BackfillLimit(_Model):
    """How much of the community one run may start emailing at once before it is a backfill.

    A first run on an existing community, or a new journey whose trigger matches old history,
    can enrol a large share of the members at once: ``nurture run`` refuses such a run unless
    told (``--allow-backfill``), and ``nurture journeys simulate`` shows it. Journeys meant for
    everyone at once (``schedule`` and ``community_milestone`` triggers) do not count.
    """

    max_share: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="The largest share of the members one run may enrol at once (0.2: 20%).",
    )
    min_members: int = Field(
        default=50,
        ge=1,
        description="Fewer members than this at once is never a backfill (a small community).",
    )


class SendingRules(_Model):
    """The rules every journey shares (``sending.yaml`` in the workspace; all optional)."""

    budget: Budget | None = Field(
        default_factory=Budget,
        description="The per-member message budget; null for none.",
    )
    quiet_hours: QuietHours | None = Field(
        default_factory=QuietHours,
        description="The quiet hours in the member's time zone; null for none.",
    )
    backfill: BackfillLimit | None = Field(
        default_factory=BackfillLimit,
        description="The backfill guard: how much of the community one run may start emailing "
        "at once; null for no guard.",
    )


def read_sending_rules(
    path: Path | str, *, limits: YamlLimits = DEFAULT_YAML_LIMITS
) -> ModelFile[SendingRules]:
    """Read the workspace's sending rules, collecting problems; an absent file gives the defaults.

    Args:
        path: The YAML file (``sending.yaml`` in a workspace).
        limits: The bounds on size, nesting and aliases.

    Returns:
        The rules (``None`` on any problem) and every problem, each with its line and field.
    """
    return load_model_file(
        path,
        SendingRules,
        expected="a mapping with 'budget', 'quiet_hours' and 'backfill'",
        what="the sending rules",
        optional=True,
        limits=limits,
    )


def load_sending_rules(path: Path | str) -> SendingRules:
    """Read the workspace's sending rules; an absent file gives the defaults.

    Args:
        path: The YAML file (``sending.yaml`` in a workspace).

    Returns:
        The rules.

    Raises:
        JourneyValidationError: The file is not valid YAML or not valid rules; every problem is
            listed with its line and field.
    """
    loaded = read_sending_rules(path)
    if loaded.value is None:
        raise JourneyValidationError(loaded.problems)
    return loaded.value
