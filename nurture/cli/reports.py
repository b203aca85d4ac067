"""``nurture segments`` and ``nurture report``: the segment cards, in the terminal or as HTML.

The commands are plain functions, registered on the ``nurture`` app in :mod:`nurture.cli.app`
(``app.command()(segments)``); they read the runtime from ``ctx.obj`` like every command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nurture.cli.context import runtime_of, settings_of
from nurture.reports import (
    SegmentCard,
    render_segment_report,
    segment_cards,
    segment_map,
)
from nurture.runtime import utc_now
from nurture.settings import Settings
from nurture.storage import SegmentKind
from nurture.workspace import Questionnaire, load_questionnaire, load_workspace_config

__all__ = ["report", "segments"]

console = Console()

REPORT_TITLE = "Segments"


def _questionnaire(settings: Settings) -> Questionnaire | None:
    """The workspace questionnaire, when there is one: it describes rule-based segments."""
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
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the HTML report; default: <data-dir>/reports/segments.html.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Write the segment report: one HTML page with a map of the members and every card."""
    runtime = runtime_of(ctx)
    settings = runtime.settings
    questionnaire = _questionnaire(settings)
    now = utc_now()
    with runtime.session() as session:
        cards = segment_cards(session, now, questionnaire=questionnaire)
        points = segment_map(session, cards, questionnaire=questionnaire, seed=settings.random_seed)
    html = render_segment_report(
        cards,
        points,
        title=f"{REPORT_TITLE} · {settings.community_name}",
        generated_at=now,
    )
    path = output or settings.data_dir / "reports" / "segments.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    console.print(
        f"{len(cards)} segments, {len(points)} members on the map: {escape(str(path.resolve()))}",
        highlight=False,
        soft_wrap=True,
    )
