"""Artifacts the flows publish to the Prefect UI, each under a stable key.

A key names one artifact whose versions the UI keeps: each run adds the latest version, and the
Artifacts page shows their history. Keys hold lowercase letters, digits and dashes only.
:data:`PUBLISHERS` says which stage's summary each artifact shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.common import flat_row
from nurture.settings import Settings
from nurture.stages import imports_dir

__all__ = [
    "DELIVERY_KEY",
    "FUNNEL_KEY",
    "IMPORTS_KEY",
    "MATCH_COVERAGE_KEY",
    "PUBLISHERS",
    "SEGMENTS_KEY",
    "Publisher",
    "markdown_report",
    "publish_delivery",
    "publish_funnel",
    "publish_imports",
    "publish_match_coverage",
    "publish_segments",
]

IMPORTS_KEY = "nurture-imports"
SEGMENTS_KEY = "nurture-segments"
MATCH_COVERAGE_KEY = "nurture-match-coverage"
FUNNEL_KEY = "nurture-journey-funnel"
DELIVERY_KEY = "nurture-delivery"
RESULTS_KEY = "nurture-journey-results"


def publish_imports(rows: Sequence[Mapping[str, Any]], folder: str) -> None:
    """The files the nightly run imported, with what each added or refused."""
    if rows:
        columns = list(dict.fromkeys(column for row in rows for column in row))
        create_table_artifact(
            [{column: row.get(column, "") for column in columns} for row in rows],
            key=IMPORTS_KEY,
            description=f"Files imported from `{folder}`; refused records went to rejects files.",
        )
    else:
        create_markdown_artifact(
            f"# Imports\n\nNo file was waiting in `{folder}`.\n",
            key=IMPORTS_KEY,
            description="Files imported by the nightly run.",
        )


def publish_segments(rows: Sequence[Any]) -> None:
    """One row per active segment: its card (label, size, what sets it apart)."""
    create_table_artifact(
        [flat_row(row) for row in rows],
        key=SEGMENTS_KEY,
        description="Segment cards after the nightly segmentation: one row per active segment.",
    )


def publish_match_coverage(coverage: Mapping[str, Any]) -> None:
    """How much of the community and of the library the latest match run covers."""
    create_markdown_artifact(
        markdown_report("Match coverage", coverage),
        key=MATCH_COVERAGE_KEY,
        description="Coverage of the latest match run.",
    )


def publish_funnel(rows: Sequence[Any]) -> None:
    """Per journey and step: entered, sent, delivered, opened, clicked, goal reached."""
    create_table_artifact(
        [flat_row(row) for row in rows],
        key=FUNNEL_KEY,
        description="Journey funnel: one row per journey step.",
    )


def publish_results(journeys: Sequence[Mapping[str, Any]]) -> None:
    """Each journey with a holdout or a split: its arms, conversion, difference, p-value, notes."""
    if not journeys:
        return
    lines = ["# Journey results", ""]
    for journey in journeys:
        lines += [f"## {journey['name']} (`{journey['journey']}`)", ""]
        lines += results_table(journey["arms"])
        lines += [""] + [f"- {note}" for note in journey["notes"]] + [""]
    create_markdown_artifact(
        "\n".join(lines),
        key=RESULTS_KEY,
        description="Holdouts and splits: goal conversion per arm against the reference.",
    )


def results_table(arms: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown rows: each arm's members, conversion (95% interval) and difference, p-value."""
    rows = []
    for arm in arms:
        rate, versus = arm["conversion"], arm["comparison"]
        rows.append(
            [
                arm["arm"],
                arm["enrolled"],
                _percent(rate["rate"], rate["low"], rate["high"]) if rate else "n/a",
                _percent(versus["difference"], versus["low"], versus["high"], sign=True)
                if versus
                else "reference",
                f"{versus['p_value']:.3g}" if versus else "",
            ]
        )
    return _table(["arm", "members", "conversion", "difference", "p-value"], rows)


def _percent(value: float, low: float, high: float, *, sign: bool = False) -> str:
    shown = f"{value * 100:+.1f}" if sign else f"{value * 100:.1f}"
    return f"{shown} % [{low * 100:.1f}, {high * 100:.1f}]"


def publish_delivery(this_run: Mapping[str, int], report: Mapping[str, Any]) -> None:
    """What this deliver run sent, then the messages by status and the failures by reason."""
    text = markdown_report("Delivery: this run", this_run)
    text += "\n" + markdown_report("Messages", report, level=2)
    create_markdown_artifact(
        text,
        key=DELIVERY_KEY,
        description="Send counts of the deliver run, messages by status, failures by reason.",
    )


Publisher = Callable[[Mapping[str, Any], Settings], None]

PUBLISHERS: Mapping[str, Publisher] = {
    "imports": lambda run, settings: publish_imports(run["imports"], str(imports_dir(settings))),
    "segment_table": lambda run, _: publish_segments(run["segment_table"]),
    "experiment_results": lambda run, _: publish_results(run["experiment_results"]),
    "match_coverage": lambda run, _: publish_match_coverage(run["match_coverage"]),
    "journey_funnel": lambda run, _: publish_funnel(run["journey_funnel"]),
    "delivery_report": lambda run, _: publish_delivery(run.get("send", {}), run["delivery_report"]),
}
"""What to publish once a stage has run, by stage name: ``publish(summaries so far, settings)``."""


def markdown_report(title: str, data: Mapping[str, Any], level: int = 1) -> str:
    """``data`` as Markdown: its scalar fields in one table, each mapping or list in its own.

    Args:
        title: The heading.
        data: Field names and values; a mapping value becomes a table of its keys and values,
            a list of mappings a table with one row per item.
        level: The heading level of ``title``; sub-tables get the next one.
    """
    lines = [f"{'#' * level} {title}", ""]
    scalars = {key: value for key, value in data.items() if not _is_nested(value)}
    if scalars:
        lines += _table(["", "value"], [[_label(key), value] for key, value in scalars.items()])
    for key, value in data.items():
        if not _is_nested(value):
            continue
        lines += ["", f"{'#' * (level + 1)} {_label(key)}", ""]
        if isinstance(value, Mapping):
            rows = [[_label(str(name)), item] for name, item in value.items()]
            lines += _table(["", "count"], rows) if rows else ["None."]
        elif value and all(isinstance(item, Mapping) for item in value):
            columns = list(dict.fromkeys(column for item in value for column in item))
            lines += _table(columns, [[item.get(c, "") for c in columns] for item in value])
        else:
            lines += [f"- {item}" for item in value] or ["None."]
    return "\n".join(lines) + "\n"


def _is_nested(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple)


def _label(key: str) -> str:
    return key.replace("_", " ")


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines
