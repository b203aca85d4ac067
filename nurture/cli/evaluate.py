"""``nurture evaluate``: offline evaluation of the ranking against popularity and random.

The command is a plain function, registered on the ``nurture`` app in :mod:`nurture.cli.app`
(``app.command()(evaluate)``); it reads the runtime from ``ctx.obj`` like every command.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nurture.cli.context import runtime_of

if TYPE_CHECKING:  # imported by the command, not by `nurture --help`
    from nurture.evaluation import EvaluationReport, Mode

__all__ = ["evaluate", "report_table"]

console = Console()

_COUNTS_SHOWN = (
    ("members", "members"),
    ("items", "items"),
    ("train_interactions", "training interactions"),
    ("test_interactions", "test interactions"),
    ("warm_members", "test members with training interactions"),
    ("cold_start_members", "test members without (cold start)"),
)


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def report_table(report: EvaluationReport) -> Table:
    """The report as a table: one row per metric, one column per recommender, best in bold.

    Args:
        report: An evaluation report.

    Returns:
        The rich table.
    """
    from nurture.evaluation import METRICS, RECOMMENDERS

    who = "warm members" if report.mode == "warm" else "cold-start members"
    evaluated = report.counts.get("evaluated_members", 0)
    table = Table(title=f"{evaluated} {who}, k={report.k}")
    table.add_column("metric")
    for name in RECOMMENDERS:
        table.add_column(name, justify="right")
    for metric, name in zip(METRICS, report.metric_names(), strict=True):
        values = [report.metrics[recommender].get(name) for recommender in RECOMMENDERS]
        known = [value for value in values if value is not None]
        best = max(known) if known and metric != "coverage" else None
        cells = [
            f"[bold]{_format(value)}[/]" if value is not None and value == best else _format(value)
            for value in values
        ]
        table.add_row(name, *cells)
    return table


def _describe_split(report: EvaluationReport) -> str:
    split = report.split
    if split.get("kind") == "temporal":
        where = f"temporal split at {split['cutoff']}"
        if "test_share" in split:
            where += f" (the last {split['test_share']:.0%} of interactions held out)"
    else:
        where = f"given split: {split.get('train')} / {split.get('test')}"
    counts = ", ".join(
        f"{label} {report.counts[key]}" for key, label in _COUNTS_SHOWN if key in report.counts
    )
    return f"{where}; {counts}; random seed {report.seed}"


def evaluate(
    ctx: typer.Context,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="A dataset folder (members.csv, items.csv, train.csv, test.csv; see "
            "docs/evaluation.md); default: the workspace's own data, split in time.",
            file_okay=False,
        ),
    ] = None,
    cold_start: Annotated[
        bool,
        typer.Option(
            "--cold-start",
            help="Evaluate the members without any training interaction (only their answers "
            "or text), instead of those with some.",
        ),
    ] = False,
    k: Annotated[int, typer.Option("--k", min=1, help="Length of the ranked lists scored.")] = 10,
    cutoff: Annotated[
        dt.datetime | None,
        typer.Option(
            "--cutoff",
            help="Split the workspace's interactions at this time, in UTC (2026-10-01 or "
            "2026-10-01T12:00:00); default: the time leaving the last 20% of them as test.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the figures as JSON; default: <data-dir>/reports/evaluation.json.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Measure ranking quality on held-out interactions: nurture vs popularity and random."""
    from nurture.evaluation import evaluate_folder, evaluate_workspace

    runtime = runtime_of(ctx)
    settings = runtime.settings
    mode: Mode = "cold-start" if cold_start else "warm"
    if dataset is not None:
        if cutoff is not None:
            raise typer.BadParameter(
                "--cutoff splits the workspace's own data; a dataset folder gives its own split "
                "(train.csv and test.csv)",
                param_hint="--cutoff",
            )
        with runtime.progress.task("evaluate"):
            report = evaluate_folder(settings, dataset, mode=mode, k=k)
    else:
        with runtime.progress.task("evaluate"):
            report = evaluate_workspace(runtime, mode=mode, k=k, cutoff=cutoff)
    console.print(report_table(report))
    console.print(escape(_describe_split(report)), highlight=False, soft_wrap=True)
    if not report.counts.get("evaluated_members"):
        console.print(
            f"No {mode} member has held-out interactions: nothing to score.", highlight=False
        )
    path = output or settings.data_dir / "reports" / "evaluation.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    console.print(f"figures written to {escape(str(path.resolve()))}", highlight=False)
