"""``nurture evaluate``: offline evaluation of the ranking against baselines, and converters.

``evaluate_app`` is registered on the ``nurture`` app in :mod:`nurture.cli.app`
(``app.add_typer(evaluate_app, name="evaluate")``): :func:`evaluate` is its callback (run when no
sub-command is given) and ``convert stackexchange`` writes dataset folders from Stack Exchange
data. Commands read the runtime from ``ctx.obj`` like every command.
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

__all__ = [
    "breakdown_tables",
    "convert_stackexchange",
    "evaluate",
    "evaluate_app",
    "html_path",
    "report_table",
    "timings_line",
]

console = Console()

REPOSITORY = Path(__file__).resolve().parents[2]
"""nurture's own source tree: converted data is never written inside it."""

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
    """The report as a table: one row per recommender, one column per metric, best in bold.

    Args:
        report: An evaluation report.

    Returns:
        The rich table.
    """
    from nurture.evaluation import METRICS, RECOMMENDERS

    who = "warm members" if report.mode == "warm" else "cold-start members"
    evaluated = report.counts.get("evaluated_members", 0)
    table = Table(title=f"{evaluated} {who}, k={report.k}")
    table.add_column("recommender")
    names = report.metric_names()
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    best: dict[str, float | None] = {}
    for metric, name in zip(METRICS, names, strict=True):
        known = [
            value
            for recommender in RECOMMENDERS
            if (value := report.metrics[recommender].get(name)) is not None
        ]
        best[name] = max(known) if known and metric != "coverage" else None
    for recommender in RECOMMENDERS:
        cells = []
        for name in names:
            value = report.metrics[recommender].get(name)
            text = _format(value)
            cells.append(f"[bold]{text}[/]" if value is not None and value == best[name] else text)
        table.add_row(recommender, *cells)
    return table


_GROUPING_TITLES = {"language": "language", "history": "training items"}


def breakdown_tables(report: EvaluationReport) -> list[Table | str]:
    """The metrics per group of members, compactly: a table per grouping with several groups.

    A row per recommender, a column per group (with its members); each cell the precision and
    nDCG at ``k``, the best nDCG of each column in bold. A grouping with one group (every member
    in it) is a line saying so: the main table holds its figures.

    Args:
        report: An evaluation report.

    Returns:
        Tables and lines (plain text, not markup), in the order of the report's groupings.
    """
    from nurture.evaluation import RECOMMENDERS

    precision, ndcg = f"precision@{report.k}", f"ndcg@{report.k}"
    shown: list[Table | str] = []
    for grouping, groups in report.breakdowns.items():
        title = _GROUPING_TITLES.get(grouping, grouping)
        if len(groups) == 1:
            (group,) = groups
            shown.append(f"by {title}: one group, {group}, holds every member (the table above)")
            continue
        table = Table(title=f"P@{report.k} / nDCG@{report.k} by {title}")
        table.add_column("recommender")
        best: dict[str, float | None] = {}
        for group, figures in groups.items():
            table.add_column(f"{escape(group)} ({figures['members']})", justify="right")
            known = [
                value
                for name in RECOMMENDERS
                if (value := figures["metrics"][name].get(ndcg)) is not None
            ]
            best[group] = max(known, default=None)
        for name in RECOMMENDERS:
            cells = []
            for group, figures in groups.items():
                values = figures["metrics"][name]
                text = f"{_short(values.get(precision))} / {_short(values.get(ndcg))}"
                top = best[group] is not None and values.get(ndcg) == best[group]
                cells.append(f"[bold]{text}[/]" if top else text)
            table.add_row(name, *cells)
        shown.append(table)
    return shown


def _short(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def timings_line(report: EvaluationReport) -> str:
    """How long each recommender took, in one line (the engine: its whole nightly run)."""
    parts = [
        f"{name} {figures['seconds']:.3f}"
        + (" (nightly run)" if "fit_seconds" not in figures else "")
        for name, figures in report.timings.items()
    ]
    return "seconds: " + ", ".join(parts) if parts else ""


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
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Where to write the HTML report (tables, per-group figures, timings, precision "
            "and nDCG at every k plotted); default: beside the JSON, its name ending in .html.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Measure ranking quality on held-out interactions: nurture vs baselines.

    Prints every metric at k (overall, per language, per number of training items) and the
    seconds each recommender took; writes them as JSON and an HTML report (precision and nDCG
    at every k plotted). Without a sub-command, evaluates; `nurture evaluate convert ...` writes
    dataset folders.
    """
    if ctx.invoked_subcommand is not None:
        return
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
    for shown in breakdown_tables(report):
        console.print(escape(shown) if isinstance(shown, str) else shown, highlight=False)
    if report.timings:
        console.print(escape(timings_line(report)), highlight=False, soft_wrap=True)
    console.print(escape(_describe_split(report)), highlight=False, soft_wrap=True)
    if not report.counts.get("evaluated_members"):
        console.print(
            f"No {mode} member has held-out interactions: nothing to score.", highlight=False
        )
    path = output or settings.data_dir / "reports" / "evaluation.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = report.to_dict()
    path.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    console.print(f"figures written to {escape(str(path.resolve()))}", highlight=False)
    from nurture.evaluation import BASELINES, ENGINE
    from nurture.reports import write_evaluation_report

    page = write_evaluation_report(
        figures,
        html or html_path(path),
        generated_at=report.created_at,
        descriptions={ENGINE: _ENGINE_DESCRIPTION, **BASELINES},
    )
    console.print(f"report written to {escape(str(page.path))}", highlight=False)


_ENGINE_DESCRIPTION = "nurture's own nightly stages run on the training data, as configured"


def html_path(json_path: Path) -> Path:
    """Where the HTML report goes by default: beside the JSON, its name ending in ``.html``."""
    if json_path.suffix.lower() == ".html":
        return json_path.with_name(json_path.name + ".html")
    return json_path.with_suffix(".html")


evaluate_app = typer.Typer(invoke_without_command=True, add_completion=False)
evaluate_app.callback()(evaluate)
convert_app = typer.Typer(
    help="Write dataset folders for `nurture evaluate --dataset DIR` from public data.",
    no_args_is_help=True,
)
evaluate_app.add_typer(convert_app, name="convert")


@convert_app.command("stackexchange")
def convert_stackexchange(
    source: Annotated[
        Path,
        typer.Argument(
            help="A Stack Exchange site dump (Users.xml, Posts.csv or Posts.xml, Comments.xml) "
            "or a folder holding LightFM's data.npz.",
            exists=True,
        ),
    ],
    out: Annotated[Path, typer.Argument(help="The dataset folder to write.", file_okay=False)],
    protocol: Annotated[
        str | None,
        typer.Option(
            "--protocol",
            help="Site dump: both (default), warm or cold-start. LightFM's archive: its own "
            "time cut-off only.",
        ),
    ] = None,
    site: Annotated[
        str | None,
        typer.Option(
            "--site",
            help="The site's name for the attribution file; default: from the folder name.",
        ),
    ] = None,
) -> None:
    """Convert Stack Exchange data into a dataset folder (see docs/evaluation.md)."""
    from nurture.evaluation import stackexchange

    if out.resolve().is_relative_to(REPOSITORY):
        raise typer.BadParameter(
            f"{out} is inside nurture's source tree: keep data out of the code repository",
            param_hint="OUT",
        )
    name = site or source.resolve().name.replace("-", " ").title()
    archive = source if source.is_file() else source / "data.npz"
    if archive.is_file():
        if protocol not in (None, "lightfm"):
            raise typer.BadParameter(
                "LightFM's archive is split with its own time cut-off only",
                param_hint="--protocol",
            )
        converted = stackexchange.convert_lightfm(
            stackexchange.read_lightfm_archive(archive), site=name
        )
    else:
        if protocol not in (None, "both", "warm", "cold-start"):
            raise typer.BadParameter("expected both, warm or cold-start", param_hint="--protocol")
        converted = stackexchange.convert_site_dump(
            stackexchange.read_site_dump(source),
            protocol or "both",  # type: ignore[arg-type]
            site=name,
        )
    stackexchange.write_dataset_folder(converted, out)
    figures = ", ".join(
        f"{key.replace('_', ' ')} {value}" for key, value in converted.counts.items()
    )
    console.print(escape(f"{out}: {figures}"), highlight=False, soft_wrap=True)
    console.print(
        f"derived from CC BY-SA data: keep {stackexchange.ATTRIBUTION_FILE} with the files",
        highlight=False,
    )
