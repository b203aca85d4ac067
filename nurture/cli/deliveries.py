"""``nurture deliveries``: the emails a crash left undecided, and an operator's word on them.

A worker records each message's hand-off to the mail backend before sending it. After a crash,
recovery (the first stage of every deliver run, or ``nurture deliveries recover``) puts back in
the queue the messages never handed over and settles the others from provider events or the
outbox's files; what remains may or may not have gone out, and waits in ``unknown`` for an
operator: ``nurture deliveries unknown`` lists them, ``nurture deliveries resolve`` settles them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from nurture.cli.context import runtime_of
from nurture.runtime import utc_now

__all__ = ["deliveries_app", "register"]

console = Console()
errors = Console(stderr=True, soft_wrap=True)

deliveries_app = typer.Typer(
    help=(
        "Emails a crash left undecided. A worker records each message's hand-off to the mail "
        "backend before sending it; after a crash, recovery puts the messages never handed over "
        "back in the queue and settles the others from provider events (or, for the outbox, "
        "its .eml files). Those still undecided are 'unknown': they may have gone out. List "
        "them, check each at the provider, then resolve them."
    ),
    no_args_is_help=True,
)

UNKNOWN_HELP = (
    "List the 'unknown' messages, oldest claim first, with what is known: recipient, journey "
    "and step, the backend they were handed to and when, and what recovery found.\n\n"
    "Look each one up at the provider (by recipient, or by its Message-ID "
    "<nurture.ID@your-domain>), then settle it with `nurture deliveries resolve`."
)

RESOLVE_HELP = (
    "Settle 'unknown' messages once you checked them at the provider: --sent when the provider "
    "has the email (it becomes 'sent'), --requeue when it has no trace of it (it goes back in "
    "the queue, due now, and the next deliver run SENDS IT AGAIN).\n\n"
    "Messages that are not 'unknown' are left alone and named. Each decision is logged."
)

RECOVER_HELP = (
    "Run the recovery of interrupted deliveries now (every deliver run does it first): "
    "messages 'sending' for longer than NURTURE_SENDING_STALE_AFTER_MINUTES are put back in "
    "the queue when never handed to the backend (failed once their workers stopped "
    "NURTURE_MAX_SEND_ATTEMPTS times with them), settled as sent when the provider reported "
    "on them or the outbox holds their file, and marked 'unknown' otherwise."
)


def _time(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def list_unknown(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many messages.")] = 100,
) -> None:
    """List the 'unknown' messages with what is known about each."""
    from nurture.delivery import unknown_messages

    with runtime_of(ctx).session() as session:
        found = unknown_messages(session, limit=limit + 1)
    if not found:
        console.print("no unknown messages: every message is settled or on its way")
        return
    shown = found[:limit]
    more = " (more not shown: raise --limit)" if len(found) > limit else ""
    console.print(f"{len(shown)} unknown messages, oldest claim first{more}:")
    for message in shown:
        backend = message.backend or "an unknown backend"
        console.print(
            f"[bold]{message.id}[/]  {escape(message.to_email)}  "
            f"{escape(message.journey_key)} / {escape(message.step_id)}  "
            f"try {message.attempts + 1}\n"
            f"    claimed at {_time(message.claimed_at) or 'an unknown time'}, handed to "
            f"{escape(backend)} at {_time(message.handed_over_at) or 'an unknown time'} (UTC)\n"
            f"    {escape(message.error or '')}",
            soft_wrap=True,
            highlight=False,
        )
    console.print(
        "check each at the provider, then: nurture deliveries resolve --sent ID... "
        "or nurture deliveries resolve --requeue ID..."
    )


def resolve(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(help="Ids of 'unknown' messages (see `unknown`).")],
    sent: Annotated[
        bool, typer.Option("--sent", help="The provider has them: mark them sent.")
    ] = False,
    requeue: Annotated[
        bool,
        typer.Option("--requeue", help="The provider has no trace of them: send them again."),
    ] = False,
) -> None:
    """Settle 'unknown' messages: --sent or --requeue."""
    from nurture.delivery import resolve_unknown

    if sent == requeue:
        raise typer.BadParameter("give exactly one of --sent and --requeue")
    with runtime_of(ctx).session() as session:
        settled = resolve_unknown(session, ids, "sent" if sent else "requeue", utc_now())
    done = "marked sent" if sent else "re-queued (sent again by the next deliver run)"
    listed = ", ".join(map(str, settled))
    console.print(f"{len(settled)} messages {done}{': ' + listed if settled else ''}")
    left = sorted(set(ids) - set(settled))
    if left:
        errors.print(
            f"left alone, not 'unknown' (or not found): {', '.join(map(str, left))}",
            highlight=False,
        )


def recover(ctx: typer.Context) -> None:
    """Recover interrupted deliveries now."""
    from nurture import stages

    summary = stages.recover_deliveries(runtime_of(ctx), utc_now())
    console.print(
        f"recovered deliveries: {summary.sent} settled as sent, {summary.requeued} re-queued, "
        f"{summary.unknown} unknown, {summary.failed} failed"
    )


def register(app: typer.Typer) -> None:
    """Add ``nurture deliveries`` (unknown, resolve, recover) to the command line app."""
    deliveries_app.command("unknown", help=UNKNOWN_HELP)(list_unknown)
    deliveries_app.command("resolve", help=RESOLVE_HELP)(resolve)
    deliveries_app.command("recover", help=RECOVER_HELP)(recover)
    app.add_typer(deliveries_app, name="deliveries")
