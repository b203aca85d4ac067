"""``nurture api-key``: make, list and revoke the keys of the HTTP API of ``nurture serve``.

A key is shown once, when it is made: only its SHA-256 is stored. Its scope is ``read`` (read
members) or ``write`` (also send members, events and answers). See ``docs/api.md``. The web
package is imported by the commands that use it: starting the command line stays quick.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from nurture.cli.context import runtime_of
from nurture.runtime import utc_now
from nurture.storage.models import ApiScope

__all__ = ["api_key_app", "register"]

console = Console(soft_wrap=True, highlight=False)
errors = Console(stderr=True, soft_wrap=True, highlight=False)

api_key_app = typer.Typer(
    help=(
        "Keys of the HTTP API (`nurture serve`, /api/v1/...). A key is shown once, when it is "
        "made; only its hash is stored. Scope 'write' sends members, events and answers; "
        "'read' only reads members."
    ),
    no_args_is_help=True,
)


def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the key is for (community-platform).")],
    scope: Annotated[
        ApiScope, typer.Option(help="read: read members; write: also send records.")
    ] = ApiScope.WRITE,
) -> None:
    """Make a key and print it, once: store it in your platform's secrets."""
    from nurture.web.api_keys import ApiKeyError, create_api_key

    try:
        with runtime_of(ctx).session() as session:
            made = create_api_key(session, name, scope, utc_now())
            session.commit()
    except ApiKeyError as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    console.print(f"API key {escape(made.name)} ({made.scope.value}), prefix {made.prefix}:")
    print(made.key)
    console.print("it is shown only now: nurture keeps only its hash")


def list_keys(ctx: typer.Context) -> None:
    """List the keys: prefix, name, scope, made, last used, revoked."""
    from nurture.web.api_keys import list_api_keys

    with runtime_of(ctx).session() as session:
        keys = list_api_keys(session)
    if not keys:
        console.print("no API keys: make one with `nurture api-key create NAME`")
        return
    for key in keys:
        used = key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never"
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "live"
        console.print(
            f"{key.prefix}  {escape(key.name)}  {key.scope.value}  "
            f"made {key.created_at:%Y-%m-%d %H:%M}  last used {used}  {state}"
        )


def revoke(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="The key's prefix (see `list`), or the key.")],
) -> None:
    """Revoke a key: every request with it is refused (401) from now on."""
    from nurture.web.api_keys import ApiKeyError, revoke_api_key

    try:
        with runtime_of(ctx).session() as session:
            key = revoke_api_key(session, prefix, utc_now())
            session.commit()
            name = key.name
    except ApiKeyError as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    console.print(f"API key {key.prefix} ({escape(name)}) is revoked")


def register(app: typer.Typer) -> None:
    """Add ``nurture api-key`` (create, list, revoke) to the command line app."""
    api_key_app.command("create")(create)
    api_key_app.command("list")(list_keys)
    api_key_app.command("revoke")(revoke)
    app.add_typer(api_key_app, name="api-key")
