"""How a run went, in a line: what it did, and what in it needs a person's attention.

A run that completed may still have refused input (an import file unreadable, records
refused), met journey conditions that failed to evaluate, or emails that failed or whose
fate is unknown. :func:`run_outcome` reads the plain summaries of a run (``{stage name:
summary}``, as :func:`nurture.orchestration.run_stage_list` and the flows return them) and
says so; ``flows/`` ends such a run in a completed state named :data:`NEEDS_ATTENTION`, which
the Prefect UI and ``nurture status`` show, with the sentence as its message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nurture.sentences import describe_delivery, describe_journeys, describe_segmentation, plural

__all__ = ["MESSAGE_LENGTH", "NEEDS_ATTENTION", "RunOutcome", "run_outcome"]

NEEDS_ATTENTION = "Needs attention"
"""The name of the completed state of a run with something to look at."""
MESSAGE_LENGTH = 600
"""The longest message a run's state carries."""


@dataclass(frozen=True)
class RunOutcome:
    """How a run went.

    Attributes:
        run: The run's name (``nightly``, ``deliver``).
        did: What it did, as sentences joined by ``; ``.
        attention: What needs a person's attention, one sentence each; empty when all is well.
    """

    run: str
    did: str
    attention: tuple[str, ...] = ()

    @property
    def needs_attention(self) -> bool:
        """Whether something in the run needs a look."""
        return bool(self.attention)

    @property
    def message(self) -> str:
        """The state message: what needs attention first, then what the run did; bounded."""
        text = "; ".join([*self.attention, self.did]) if self.attention else self.did
        text = f"{self.run}: {text}"
        return text if len(text) <= MESSAGE_LENGTH else text[: MESSAGE_LENGTH - 1] + "…"


def _count(summary: Any, key: str) -> int:
    value = summary.get(key) if isinstance(summary, Mapping) else None
    return int(value) if isinstance(value, int | float) else 0


def _imports(rows: Sequence[Mapping[str, Any]]) -> tuple[str | None, list[str]]:
    """What the imports did, and the files or records they refused."""
    if not rows:
        return None, []
    attention: list[str] = []
    refused_files = [row for row in rows if row.get("outcome") != "done"]
    for row in refused_files:
        attention.append(
            f"import file {row.get('file')} refused ({row.get('error') or 'unreadable'}); "
            "it was moved to imports/failed"
        )
    for row in rows:
        refused = _count(row, "refused")
        if row.get("outcome") == "done" and refused:
            attention.append(
                f"{plural(refused, 'record')} of {row.get('file')} refused (see "
                f"{row.get('rejects') or 'its rejects file'})"
            )
    done = len(rows) - len(refused_files)
    return f"imported {plural(done, 'file')} of {len(rows)}", attention


def run_outcome(run: str, results: Mapping[str, Any]) -> RunOutcome:
    """How the run ``run`` went, from its plain summaries ``{stage name: summary}``.

    Args:
        run: The run's name.
        results: The summary of each stage that ran, as plain data.

    Returns:
        What it did, and what needs attention: refused import files and records, rule
        segments that failed, journey conditions that failed to evaluate, emails that failed
        or whose fate is unknown.
    """
    did: list[str] = []
    attention: list[str] = []
    imported, refused = _imports(list(results.get("imports") or []))
    if imported:
        did.append(imported)
    attention += refused
    if isinstance(profile := results.get("profile"), Mapping):
        did.append(f"profiled {plural(_count(profile, 'profiled'), 'member')}")
    if isinstance(segment := results.get("segment"), Mapping):
        did.append(describe_segmentation(segment))
        for key, error in (segment.get("rule_errors") or {}).items():
            attention.append(f"rule segment {key} failed: {error}")
    if isinstance(match := results.get("match"), Mapping):
        did.append(
            f"{plural(_count(match, 'recommendations'), 'recommendation')} for "
            f"{plural(_count(match, 'members'), 'member')}"
        )
    if isinstance(recover := results.get("recover"), Mapping) and _count(recover, "unknown"):
        attention.append(
            f"{plural(_count(recover, 'unknown'), 'email')} left in status unknown by an "
            "interrupted run: check them with the mail provider"
        )
    if isinstance(journeys := results.get("journeys"), Mapping):
        did.append(describe_journeys(journeys))
        if errors := _count(journeys, "condition_errors"):
            attention.append(
                f"{plural(errors, 'journey condition')} failed to evaluate (taken as false): "
                "see the run's logs and `nurture journeys validate`"
            )
    if isinstance(send := results.get("send"), Mapping):
        did.append(describe_delivery(send))
        if failed := _count(send, "failed"):
            attention.append(
                f"{plural(failed, 'email')} failed (template or provider): "
                "`nurture status` lists the reasons"
            )
        if unknown := _count(send, "unknown"):
            attention.append(
                f"{plural(unknown, 'email')} in status unknown: check them with the mail provider"
            )
    return RunOutcome(run, "; ".join(did) or "nothing to do", tuple(attention))
