"""What a stage did, as one sentence with its numbers, for the logs and the flow runs.

Every summary a log line tells goes through one of these functions, never through its repr
(``DeliverySummary(sent=500, ...)``). Each takes the summary's counts as a mapping (what
:func:`dataclasses.asdict` or the plain summary of a stage gives), so a chunk's summary, a
whole stage's and a Prefect task's result read the same. A missing count reads 0. Sentences
never name a member: counts, ids of runs and file names only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = [
    "counts_of",
    "describe_content_sync",
    "describe_delivery",
    "describe_journeys",
    "describe_provider_events",
    "describe_segmentation",
    "plural",
]


def counts_of(summary: Any) -> Mapping[str, Any]:
    """A summary (dataclass or mapping) as a mapping of its fields."""
    if dataclasses.is_dataclass(summary) and not isinstance(summary, type):
        return dataclasses.asdict(summary)
    if isinstance(summary, Mapping):
        return summary
    return {}


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 email``, ``2 emails``, ``0 emails``."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def _int(counts: Mapping[str, Any], key: str) -> int:
    value = counts.get(key) or 0
    return int(value) if isinstance(value, int | float) else 0


def _extras(counts: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """``, 2 failed, 1 to retry``: the counts that are not zero, in the order given."""
    parts = [f"{_int(counts, key)} {label}" for key, label in labels.items() if _int(counts, key)]
    return "".join(f", {part}" for part in parts)


def describe_delivery(summary: Any) -> str:
    """``delivered 500: 498 sent, 2 suppressed`` (failed, to retry, unknown when not zero)."""
    counts = counts_of(summary)
    done = ("sent", "suppressed", "failed", "retried", "unknown")
    total = sum(_int(counts, key) for key in done)
    extras = _extras(
        counts,
        {"failed": "failed", "retried": "to retry later", "unknown": "in doubt (status unknown)"},
    )
    skipped = _int(counts, "skipped")
    taken = f" ({skipped} already taken or not due)" if skipped else ""
    return (
        f"delivered {total}: {_int(counts, 'sent')} sent, "
        f"{_int(counts, 'suppressed')} suppressed{extras}{taken}"
    )


def describe_journeys(summary: Any) -> str:
    """``journeys: 63 members enrolled, 24 emails queued, ...`` (holds when not zero)."""
    counts = counts_of(summary)
    held = _extras(
        counts,
        {
            "quiet_deferred": "held for quiet hours",
            "budget_deferred": "held over budget",
            "budget_skipped": "skipped over budget",
            "condition_errors": "conditions failed (taken as false)",
        },
    )
    return (
        f"journeys: {plural(_int(counts, 'enrolled'), 'member')} enrolled, "
        f"{plural(_int(counts, 'messages_queued'), 'email')} queued, "
        f"{_int(counts, 'advanced')} advanced, {_int(counts, 'completed')} completed, "
        f"{_int(counts, 'goal_reached')} reached their goal, "
        f"{_int(counts, 'exited')} exited{held}"
    )


def describe_content_sync(summary: Any, embedded: int | None = None) -> str:
    """``content library: 50 items added, 0 updated, 0 unchanged, 0 removed; 50 embedded``."""
    counts = counts_of(summary)
    added = _int(counts, "added")
    text = (
        f"content library: {plural(added, 'item')} added, {_int(counts, 'updated')} updated, "
        f"{_int(counts, 'unchanged')} unchanged, {_int(counts, 'removed')} removed"
    )
    return text if embedded is None else f"{text}; {embedded} embedded"


def describe_segmentation(summary: Any) -> str:
    """``5 segments of 40 members (silhouette 0.137)``; rule segments and errors when any."""
    counts = counts_of(summary)
    quality = counts.get("quality")
    score = f" (silhouette {quality:.3f})" if isinstance(quality, int | float) else ""
    text = (
        f"{plural(_int(counts, 'n_segments'), 'segment')} of "
        f"{plural(_int(counts, 'n_members'), 'member')}{score}"
    )
    rules = counts.get("rule_sizes")
    if isinstance(rules, Mapping) and rules:
        text += f", {plural(len(rules), 'rule segment')}"
    errors = counts.get("rule_errors")
    if isinstance(errors, Mapping) and errors:
        text += f", {plural(len(errors), 'rule')} failed: {', '.join(map(str, errors))}"
    return text


def describe_provider_events(summary: Any) -> str:
    """``provider events: 12 received, 10 recorded, ...`` (duplicates and others when any)."""
    counts = counts_of(summary)
    extras = _extras(
        counts,
        {
            "duplicates": "duplicates",
            "invalid": "invalid",
            "unmatched": "matching no email",
            "delivery_updates": "deliveries updated",
            "activities": "opens or clicks",
            "suppressed": "addresses suppressed",
        },
    )
    return (
        f"provider events: {_int(counts, 'received')} received, "
        f"{_int(counts, 'recorded')} recorded{extras}"
    )
