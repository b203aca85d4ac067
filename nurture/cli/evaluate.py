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
    from nurture.evaluation import EvaluationReport, Mode, TuningResult
    from nurture.recommend import RankingWeights
    from nurture.runtime import Runtime
    from nurture.settings import Settings

__all__ = [
    "ablation_table",
    "breakdown_tables",
    "comparison_table",
    "convert_stackexchange",
    "evaluate",
    "evaluate_app",
    "html_path",
    "report_table",
    "timings_line",
    "tuning_table",
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


def ablation_table(report: EvaluationReport) -> Table:
    """The ablation as a table: nurture, then each signal alone and each removed.

    Args:
        report: An evaluation report with an ablation.

    Returns:
        The rich table.
    """
    from nurture.evaluation import ENGINE

    names = [name for name in report.metric_names() if not name.startswith(("hit", "cov"))]
    table = Table(title=f"ablation: {ENGINE} with each signal alone and each removed")
    table.add_column("variant")
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_row(ENGINE, *(_format(report.metrics[ENGINE].get(name)) for name in names))
    for variant, values in report.ablation.items():
        table.add_row(variant, *(_format(values.get(name)) for name in names))
    return table


def comparison_table(report: EvaluationReport) -> Table:
    """The engine against each baseline: the difference of the means, and how sure it is.

    Args:
        report: An evaluation report with comparisons.

    Returns:
        The rich table: a row per baseline, a column per compared metric, each cell the
        difference, its 95 % interval and the verdict.
    """
    from nurture.evaluation import ENGINE
    from nurture.evaluation.significance import CONFIDENCE

    names = list(next(iter(report.comparisons.values()), {}))
    table = Table(
        title=f"{ENGINE} minus each baseline, same members ({CONFIDENCE:.0%} paired bootstrap)"
    )
    table.add_column("baseline", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right")
    for baseline, differences in report.comparisons.items():
        cells = []
        for name in names:
            difference = differences.get(name)
            cells.append(
                "n/a"
                if difference is None
                else f"{difference.difference:+.4f} [{difference.low:+.3f}, "
                f"{difference.high:+.3f}] {difference.verdict}"
            )
        table.add_row(baseline, *cells)
    return table


def tuning_table(result: TuningResult) -> Table:
    """The tuning as a table: each group's validation figures before and after.

    Args:
        result: What ``--tune`` found.

    Returns:
        The rich table.
    """
    k = result.k
    table = Table(title=f"validation (carved from the training data), k={k}")
    table.add_column("members")
    table.add_column("scored", justify="right")
    table.add_column("weights")
    for name in (f"precision@{k}", f"ndcg@{k}"):
        table.add_column(name, justify="right", no_wrap=True)
    for group, tuned in result.groups.items():
        label = group.replace("_", " ")
        table.add_row(
            label,
            str(tuned.members),
            "in force",
            *(_format(tuned.start_metrics.get(name)) for name in (f"precision@{k}", f"ndcg@{k}")),
        )
        table.add_row(
            "",
            "",
            f"tuned ({tuned.trials} trials)",
            *(_format(tuned.best_metrics.get(name)) for name in (f"precision@{k}", f"ndcg@{k}")),
        )
    return table


def _weights_from(settings: Settings, path: Path | None) -> tuple[RankingWeights, RankingWeights]:
    from nurture.recommend import ranking_weight_sets

    return ranking_weight_sets(settings, path)


def _tune(
    runtime: Runtime,
    dataset: Path | None,
    *,
    k: int,
    trials: int,
    path: Path,
    weights: Path | None,
    cutoff: dt.datetime | None,
) -> None:
    from nurture.evaluation import tune_folder, tune_workspace
    from nurture.recommend import write_ranking_file
    from nurture.recommend.ranking_file import weight_changes

    settings = runtime.settings
    start = _weights_from(settings, weights)
    if dataset is None:
        result = tune_workspace(runtime, k=k, trials=trials, start=start, cutoff=cutoff)
        source = "the workspace's activity before the cut-off"
        unread = "activity at or after the cut-off not read"
    else:
        result = tune_folder(settings, dataset, k=k, trials=trials, start=start)
        source = str(dataset)
        unread = "test.csv not read"
    console.print(tuning_table(result))
    counts = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in result.counts.items())
    console.print(escape(f"{unread}; {counts}; seed {result.seed}"), highlight=False)
    with_history, without_history = result.weights()
    for label, tuned in (("with history", with_history), ("without history", without_history)):
        changes = ", ".join(f"{key} {value}" for key, value in weight_changes(tuned).items())
        console.print(escape(f"{label}: {changes or 'the defaults'}"), highlight=False)
    write_ranking_file(
        path,
        with_history,
        without_history,
        comment=(
            f"Written by `nurture evaluate --tune` on {source} (k={k}, {trials} trials per "
            f"group, seed {result.seed}),\non a validation split of its training data. "
            "See docs/evaluation.md."
        ),
    )
    console.print(f"weights written to {escape(str(path.resolve()))}", highlight=False)


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
    ablation: Annotated[
        bool,
        typer.Option(
            "--ablation",
            help="Also score nurture with each ranking signal alone and each removed.",
        ),
    ] = False,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="Rank with this ranking weights file instead of the workspace's ranking.yaml "
            "(the settings still apply on top).",
            dir_okay=False,
            exists=True,
        ),
    ] = None,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Search the ranking weights of members with and without history on a "
            "validation split of the training data (a dataset's test.csv, or the workspace's "
            "activity from the cut-off on, is never read), and write them as a ranking "
            "weights file.",
        ),
    ] = False,
    trials: Annotated[
        int,
        typer.Option("--trials", min=1, help="With --tune: weight sets tried per group."),
    ] = 40,
    output_weights: Annotated[
        Path | None,
        typer.Option(
            "--output-weights",
            help="With --tune: where to write the weights; default: the workspace's ranking.yaml.",
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

    Prints every metric at k (overall, per language, per number of training items), nurture
    minus each baseline with a 95% paired bootstrap interval, and the seconds each recommender
    took; writes them as JSON and an HTML report (precision and nDCG
    at every k plotted). Without a sub-command, evaluates; `nurture evaluate convert ...` writes
    dataset folders.
    """
    if ctx.invoked_subcommand is not None:
        return
    from nurture.evaluation import evaluate_folder, evaluate_workspace

    runtime = runtime_of(ctx)
    settings = runtime.settings
    mode: Mode = "cold-start" if cold_start else "warm"
    if dataset is not None and cutoff is not None:
        raise typer.BadParameter(
            "--cutoff splits the workspace's own data; a dataset folder gives its own split "
            "(train.csv and test.csv)",
            param_hint="--cutoff",
        )
    if tune:
        with runtime.progress.task("evaluate --tune"):
            _tune(
                runtime,
                dataset,
                k=k,
                trials=trials,
                path=output_weights or settings.ranking_path,
                weights=weights,
                cutoff=cutoff,
            )
        return
    ranking = _weights_from(settings, weights)
    if dataset is not None:
        with runtime.progress.task("evaluate"):
            report = evaluate_folder(
                settings, dataset, mode=mode, k=k, weights=ranking, ablation=ablation
            )
    else:
        with runtime.progress.task("evaluate"):
            report = evaluate_workspace(
                runtime, mode=mode, k=k, cutoff=cutoff, weights=ranking, ablation=ablation
            )
    console.print(report_table(report))
    if report.comparisons:
        console.print(comparison_table(report))
    if report.ablation:
        console.print(ablation_table(report))

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
