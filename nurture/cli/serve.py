"""``nurture serve``: the web app members, SendGrid and platforms reach (pages, webhooks, API).

The command is a plain function, registered on the ``nurture`` app in :mod:`nurture.cli.app`
(``app.command()(serve)``); it reads the runtime from ``ctx.obj`` like every command.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from nurture.cli.context import runtime_of
from nurture.settings import DEVELOPMENT_SECRET, Settings

__all__ = ["serve"]

errors = Console(stderr=True, soft_wrap=True)


def _warnings(settings: Settings) -> list[str]:
    """What an operator should fix before members click the links."""
    found = []
    if settings.unsubscribe_secret.get_secret_value() == DEVELOPMENT_SECRET:
        found.append(
            "NURTURE_UNSUBSCRIBE_SECRET is the development default: anyone can forge "
            "unsubscribe links; set your own in production"
        )
    if settings.suppression_salt.get_secret_value() == DEVELOPMENT_SECRET:
        found.append(
            "NURTURE_SUPPRESSION_SALT is the development default; set your own (and keep it) "
            "in production"
        )
    if settings.sendgrid_webhook_public_key is None:
        found.append(
            "NURTURE_SENDGRID_WEBHOOK_PUBLIC_KEY is not set: POST /webhooks/sendgrid answers 503"
        )
    return found


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on; default: NURTURE_WEB_HOST, else 127.0.0.1."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="Port to listen on; default: NURTURE_WEB_PORT, else 8000."
        ),
    ] = None,
) -> None:
    """Serve the member pages, the webhooks and the HTTP API.

    Routes: /unsubscribe/{token} (GET asks, POST unsubscribes: one-click, RFC 8058),
    /preferences/{token}, /questionnaire/{token} (the questionnaire as a form),
    POST /webhooks/sendgrid (signed events), POST /webhooks/integrations/{name} (a platform's
    signed webhook, integrations/*.yaml), /api/v1/... (the HTTP API: members, events, answers;
    keys from `nurture api-key create`; schema at /api/v1/openapi.json), GET /health.

    Links in emails point at NURTURE_PUBLIC_BASE_URL, which must reach this server over HTTPS.
    """
    import uvicorn

    from nurture.web import create_app

    runtime = runtime_of(ctx)
    settings = runtime.settings
    for warning in _warnings(settings):
        errors.print(f"[yellow]warning:[/] {warning}", highlight=False)
    app = create_app(settings, engine=runtime.engine)
    uvicorn.run(
        app,
        host=host or settings.web_host,
        port=port or settings.web_port,
        server_header=False,
        log_level="info",
    )
