"""``nurture segments`` and ``nurture report``: the segment cards, and the HTML reports.

The commands are plain functions, added to the ``nurture`` app by :func:`register`; they read
the runtime from ``ctx.obj`` like every command.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nurture.cli.context import runtime_of, settings_of
from nurture.runtime import resolve_now, utc_now
from nurture.settings import Settings
from nurture.storage import SegmentKind

if TYPE_CHECKING:  # imported by the commands, not by `nurture --help`
    from nurture.reports import SegmentCard, WrittenReport
    from nurture.workspace import Questionnaire

DELIVERY_DAYS = 30
"""Days the delivery report covers by default: ``nurture.reports.DEFAULT_DELIVERY_DAYS``,
repeated so that ``nurture --help`` does not import the reports (a test keeps them equal)."""

__all__ = ["ReportKind", "register", "report", "segments"]

console = Console()


class ReportKind(enum.StrEnum):
    """The reports ``nurture report`` writes."""

    SEGMENTS = "segments"
    JOURNEYS = "journeys"
    DELIVERY = "delivery"
    ALL = "all"


REPORT_HELP = (
    "Write an HTML report with charts: segments (the default), journeys, delivery, or all "
    "three.\n\n"
    "segments: a map of the members coloured by segment, segment sizes over the last "
    "segmentation runs, each segment's lifecycle mix, and every segment's card. journeys: per "
    "journey, its funnel from entry through each send step (sent, delivered, opened, clicked) "
    "to the goal and the exits. delivery: the messages sent, failed and suppressed per day, the "
    "failure reasons and the queue.\n\n"
    "Each page is one self-contained file: its charts are drawn by the JavaScript inlined in it, "
    "so it opens in any browser without network access. Default place: "
    "<data-dir>/reports/<report>.html."
)


def register(app: typer.Typer) -> None:
    """Add ``segments`` and ``report`` to the ``nurture`` app."""
    app.command("segments")(segments)
    app.command("report", help=REPORT_HELP)(report)


def _questionnaire(settings: Settings) -> Questionnaire | None:
    """The workspace questionnaire, when there is one: it describes rule-based segments."""
    from nurture.workspace import load_questionnaire, load_workspace_config

    path = settings.questionnaire_path
    if not path.is_file():
        return None
    return load_questionnaire(path, languages=load_workspace_config(settings.workspace).languages)


def _overview(cards: list[SegmentCard]) -> Table:
    members = sum(card.size for card in cards if card.kind == SegmentKind.CLUSTER)
    title = f"{len(cards)} segments" + (f" of {members} members" if members else "")
    table = Table(title=title)
    for column in ("segment", "kind", "label", "members", "share", "size change"):
        table.add_column(column, justify="right" if column in ("members", "share") else "left")
    for card in cards:
        table.add_row(
            card.key,
            card.kind,
            escape(card.label),
            str(card.size),
            f"{card.share:.0%}",
            escape(card.drift.describe()["size"]),
        )
    return table


def _card_table(card: SegmentCard) -> Table:
    table = Table(
        title=f"{card.key} · {escape(card.label)}", show_header=False, title_justify="left"
    )
    table.add_column("field", style="bold")
    table.add_column("value")
    if card.description and card.kind != SegmentKind.CLUSTER:
        table.add_row("description", escape(card.description))
    table.add_row("members", f"{card.size} ({card.share:.0%}), {card.kind}")
    table.add_row(
        "distinctive",
        escape("\n".join(feature.describe() for feature in card.distinctive)) or "none stand out",
    )
    table.add_row("top words", escape(", ".join(card.top_terms)) or "no free text")
    table.add_row(
        "lifecycle",
        ", ".join(f"{stage.replace('_', ' ')} {share:.0%}" for stage, share in card.lifecycle_mix())
        or "unknown",
    )
    table.add_row("examples", escape("\n".join(card.examples)) or "none")
    for name, text in card.drift.describe().items():
        table.add_row(name, escape(text))
    return table


def segments(
    ctx: typer.Context,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the cards as JSON, for other programs.")
    ] = False,
) -> None:
    """Show the card of each active segment: who is in it, what sets it apart, how it changed."""
    from nurture.reports import segment_cards

    questionnaire = _questionnaire(settings_of(ctx))
    with runtime_of(ctx).session() as session:
        cards = segment_cards(session, utc_now(), questionnaire=questionnaire)
    if json_output:
        typer.echo(json.dumps([card.to_dict() for card in cards], ensure_ascii=False, indent=2))
        return
    if not cards:
        console.print("No segments yet: run `nurture segment` (or `nurture run`) first.")
        return
    console.print(_overview(cards))
    for card in cards:
        console.print(_card_table(card))


def report(
    ctx: typer.Context,
    which: Annotated[
        ReportKind,
        typer.Argument(help="The report to write.", case_sensitive=False),
    ] = ReportKind.SEGMENTS,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the HTML report (one report, not all); default: "
            "<data-dir>/reports/<report>.html.",
            dir_okay=False,
        ),
    ] = None,
    days: Annotated[
        int,
        typer.Option(min=1, max=366, help="Days the delivery report covers, today included."),
    ] = DELIVERY_DAYS,
    now: Annotated[
        dt.datetime | None,
        typer.Option(
            help="Report as of this time (UTC): the delivery report's last day, the ages on "
            "the cards; default: now."
        ),
    ] = None,
) -> None:
    """Write an HTML report with charts: segments (the default), journeys, delivery, or all."""
    from nurture.reports import write_delivery_report, write_journey_report, write_segment_report

    runtime = runtime_of(ctx)
    settings = runtime.settings
    if which == ReportKind.ALL and output is not None:
        raise typer.BadParameter(
            "give --output with one report; 'all' writes each to <data-dir>/reports/",
            param_hint="--output",
        )
    kinds = (
        [ReportKind.SEGMENTS, ReportKind.JOURNEYS, ReportKind.DELIVERY]
        if which == ReportKind.ALL
        else [which]
    )
    now = resolve_now(now)
    community = settings.community_name
    with runtime.session() as session:
        for kind in kinds:
            path = output or settings.data_dir / "reports" / f"{kind.value}.html"
            written: WrittenReport
            if kind == ReportKind.SEGMENTS:
                questionnaire = _questionnaire(settings)
                written = write_segment_report(
                    session,
                    path,
                    now=now,
                    title=f"Segments · {community}",
                    questionnaire=questionnaire,
                    seed=settings.random_seed,
                )
            elif kind == ReportKind.JOURNEYS:
                written = write_journey_report(
                    session, path, now=now, title=f"Journeys · {community}"
                )
            else:
                written = write_delivery_report(
                    session, path, now=now, days=days, title=f"Delivery · {community}"
                )
            console.print(
                f"{kind.value}: {escape(written.summary)}: {escape(str(written.path))} "
                f"({written.size_bytes / 1000:.0f} kB)",
                highlight=False,
                soft_wrap=True,
            )
