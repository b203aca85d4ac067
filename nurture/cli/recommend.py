"""``nurture recommend export``: the ranked lists, as CSV or JSON Lines, for other tools.

The commands hang on ``recommend_app``, registered on the ``nurture`` app in
:mod:`nurture.cli.app` (``app.add_typer(recommend_app, name="recommend")``); they read the
runtime from ``ctx.obj`` like every command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from nurture.cli.context import runtime_of
from nurture.runtime import utc_now

if TYPE_CHECKING:  # imported by the command, not by `nurture --help`
    from nurture.recommend import ExportFormat

__all__ = ["recommend_app"]

errors = Console(stderr=True, soft_wrap=True)

recommend_app = typer.Typer(
    help="The members' recommendations: export the ranked lists for other tools.",
    no_args_is_help=True,
)


def _format(chosen: str | None, output: Path | None) -> ExportFormat:
    """The format asked for, else the one the output's suffix names, else CSV."""
    from nurture.recommend import EXPORT_FORMATS

    if chosen is None:
        suffix = output.suffix.lower() if output is not None else ""
        return "jsonl" if suffix in (".jsonl", ".ndjson", ".json") else "csv"
    if chosen not in EXPORT_FORMATS:
        raise typer.BadParameter("expected csv or jsonl", param_hint="--format")
    return chosen


@recommend_app.command(
    "export",
    help=(
        "Write every member's ranked recommendations, best first: one row per member and item "
        "with the member's external id, e-mail address, language and consent status, the rank, "
        "the item's key, title, kind and URL, the score and the reason.\n\n"
        "The rows identify members (external id and e-mail, for your CRM or e-mailing tool): "
        "the file is written readable by its owner only; keep it that way. Use the consent "
        "status column to mail only members who agreed. Items that expired or events that "
        "started since the last `nurture match` are left out."
    ),
)
def export(
    ctx: typer.Context,
    export_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="csv or jsonl; default: from the output file's suffix (.jsonl), else csv.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False, help="File to write; default: stdout."),
    ] = None,
) -> None:
    """Export every member's ranked recommendations as CSV or JSON Lines."""
    from nurture.recommend import write_recommendations

    chosen = _format(export_format, output)
    now = utc_now()
    with runtime_of(ctx).session() as session:
        if output is None:
            write_recommendations(session, sys.stdout, chosen, now=now)
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            rows = write_recommendations(session, handle, chosen, now=now)
    errors.print(
        f"exported {rows} recommendations to {escape(str(output))} ({chosen})", highlight=False
    )
