"""The web app of ``nurture serve``: unsubscribe and preference pages, the provider webhook.

Routes:

- ``GET /unsubscribe/{token}``: asks to confirm; a GET never changes anything (mail scanners
  follow links).
- ``POST /unsubscribe/{token}``: RFC 8058 one-click unsubscribe (``List-Unsubscribe=One-Click``)
  and the page's button: puts the address on the suppression list, answers 200, no redirect.
- ``GET /preferences/{token}``, ``POST /preferences/{token}``: the journey categories the member
  receives, or unsubscribe from everything.
- ``POST /webhooks/sendgrid``: SendGrid's signed Event Webhook.
- ``GET /health``: ``ok``.

The signed token in the link is the member's only credential; a token acts only on the member
whose current address it was made for (``find_token_member``). A request that cannot be served
gets a 4xx page (400 for a link that does not work), or a 503 when the database is busy or
unavailable: never a 500 for something a client sent.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qs

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from nurture.delivery.events import record_provider_events
from nurture.delivery.rendering import resolve_language
from nurture.delivery.suppression import SuppressionReason, is_suppressed, suppress_address
from nurture.delivery.unsubscribe import InvalidUnsubscribeTokenError, find_token_member
from nurture.errors import ConfigurationError
from nurture.settings import Settings
from nurture.storage import create_database_engine, session_scope
from nurture.storage.models import Member, utcnow
from nurture.web import pages
from nurture.web.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    check_webhook_signature,
    load_webhook_public_key,
)

__all__ = ["MAX_FORM_BYTES", "MAX_WEBHOOK_BYTES", "create_app"]

logger = logging.getLogger(__name__)

MAX_FORM_BYTES = 16 * 1024
"""Largest preference form accepted."""
MAX_WEBHOOK_BYTES = 10 * 1024 * 1024
"""Largest webhook batch accepted (SendGrid's batches are far smaller)."""

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    # The token in the address must not leak to other sites.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}

T = TypeVar("T")


class _Unavailable(Exception):
    """The database could not be used; the client may try again later."""


class _BodyTooLarge(Exception):
    """The request body is larger than the route accepts."""


def _html(content: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status_code, headers=_SECURITY_HEADERS)


def _invalid_link() -> HTMLResponse:
    return _html(pages.invalid_link_page(), 400)


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused when larger than ``limit`` bytes (without reading it all)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _App:
    """The routes, bound to the settings and the database engine."""

    def __init__(self, settings: Settings, engine: Engine, clock: Callable[[], dt.datetime]):
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.secret = settings.unsubscribe_secret.get_secret_value()
        self.salt = settings.suppression_salt.get_secret_value()
        self.base_url = settings.public_base_url.rstrip("/")
        self.webhook_key = None
        self.webhook_problem: str | None = None
        configured = settings.sendgrid_webhook_public_key
        if configured is None or not configured.get_secret_value().strip():
            self.webhook_problem = (
                "the SendGrid Event Webhook is not configured: set NURTURE_SENDGRID_WEBHOOK_"
                "PUBLIC_KEY to the verification key of SendGrid's signed Event Webhook"
            )
        else:
            try:
                self.webhook_key = load_webhook_public_key(configured.get_secret_value())
            except ConfigurationError as exc:
                self.webhook_problem = str(exc)
                logger.error("%s", exc)

    # --- database ---------------------------------------------------------------------------

    def _in_transaction(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction; once more if a concurrent request won a race."""
        for attempt in (1, 2):
            try:
                with session_scope(self.engine) as session:
                    return work(session)
            except IntegrityError:
                # Another request stored the same row first: the second run sees it.
                if attempt == 2:
                    logger.exception("database conflict, twice")
                    raise _Unavailable from None
            except SQLAlchemyError:
                logger.exception("database error")
                raise _Unavailable from None
        raise AssertionError("unreachable")

    async def _run(self, work: Callable[[Session], T]) -> T:
        return await run_in_threadpool(self._in_transaction, work)

    def _member(self, session: Session, token: str) -> Member:
        return find_token_member(session, token, self.secret)

    # --- unsubscribe ------------------------------------------------------------------------

    async def unsubscribe_form(self, request: Request) -> Response:
        """GET: the confirmation page (changes nothing)."""
        token = request.path_params["token"]

        def read(session: Session) -> str:
            member = self._member(session, token)
            return pages.unsubscribe_page(
                resolve_language(member.language),
                community=self.settings.community_name,
                email=member.email,
                suppressed=is_suppressed(session, member.email, self.salt),
                preferences_url=f"{self.base_url}/preferences/{token}",
            )

        return await self._page(read)

    async def unsubscribe(self, request: Request) -> Response:
        """POST: one-click unsubscribe; the address goes on the suppression list."""
        token = request.path_params["token"]

        def write(session: Session) -> str:
            member = self._member(session, token)
            added = suppress_address(
                session,
                member.email,
                self.salt,
                SuppressionReason.UNSUBSCRIBED,
                "one-click",
                now=self.clock(),
            )
            if added:
                logger.info("member %s unsubscribed (one-click)", member.id)
            return pages.unsubscribed_page(
                resolve_language(member.language),
                community=self.settings.community_name,
                email=member.email,
            )

        return await self._page(write)

    # --- preferences ------------------------------------------------------------------------

    async def preferences_form(self, request: Request) -> Response:
        """GET: the preference page."""
        token = request.path_params["token"]
        return await self._page(lambda session: self._preferences(session, token))

    async def save_preferences(self, request: Request) -> Response:
        """POST: save the categories the member receives, or unsubscribe from everything."""
        token = request.path_params["token"]
        try:
            body = await _read_body(request, MAX_FORM_BYTES)
            form = parse_qs(body.decode("utf-8"), max_num_fields=20, strict_parsing=False)
        except (_BodyTooLarge, UnicodeDecodeError, ValueError):
            form = {}
        if form.get("token") != [token]:
            return await self._form_unreadable(token)
        chosen = set(form.get("category", []))
        everything = form.get("everything") == ["yes"]

        def write(session: Session) -> str:
            member = self._member(session, token)
            if everything:
                if suppress_address(
                    session,
                    member.email,
                    self.salt,
                    SuppressionReason.UNSUBSCRIBED,
                    "preferences",
                    now=self.clock(),
                ):
                    logger.info("member %s unsubscribed (preference page)", member.id)
            else:
                kept = [
                    c for c in member.unsubscribed_categories or [] if c not in pages.CATEGORIES
                ]
                member.unsubscribed_categories = kept + [
                    category for category in pages.CATEGORIES if category not in chosen
                ]
            return self._preferences(session, token, member=member, saved=True)

        return await self._page(write)

    def _preferences(
        self, session: Session, token: str, *, member: Member | None = None, saved: bool = False
    ) -> str:
        member = member or self._member(session, token)
        return pages.preferences_page(
            resolve_language(member.language),
            community=self.settings.community_name,
            email=member.email,
            token=token,
            unsubscribed_categories=list(member.unsubscribed_categories or []),
            suppressed=is_suppressed(session, member.email, self.salt),
            saved=saved,
        )

    async def _form_unreadable(self, token: str) -> Response:
        def read(session: Session) -> str:
            lang = resolve_language(self._member(session, token).language)
            return pages.message_page(lang, "preferences_title", "form_unreadable")

        return await self._page(read, status_code=400)

    async def _page(self, work: Callable[[Session], str], *, status_code: int = 200) -> Response:
        """The page ``work`` renders, or the page saying why there is none."""
        try:
            return _html(await self._run(work), status_code)
        except InvalidUnsubscribeTokenError as exc:
            logger.info("refused link: %s", exc)
            return _invalid_link()
        except _Unavailable:
            return _html(pages.message_page("en", "preferences_title", "unavailable"), 503)

    # --- provider webhook -------------------------------------------------------------------

    async def sendgrid_webhook(self, request: Request) -> Response:
        """POST: a signed batch of SendGrid events."""
        if self.webhook_key is None:
            return JSONResponse({"error": self.webhook_problem}, status_code=503)
        try:
            body = await _read_body(request, MAX_WEBHOOK_BYTES)
        except _BodyTooLarge:
            return JSONResponse({"error": "body too large"}, status_code=413)
        refused = check_webhook_signature(
            body,
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER),
            self.webhook_key,
            now=self.clock(),
            max_age_seconds=self.settings.webhook_max_age_seconds,
        )
        if refused is not None:
            logger.warning("sendgrid webhook refused: %s", refused)
            return JSONResponse({"error": refused}, status_code=403)
        try:
            events = json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            return JSONResponse({"error": "body: expected a JSON array of events"}, 400)
        if not isinstance(events, list):
            return JSONResponse({"error": "body: expected a JSON array of events"}, 400)
        now = self.clock()
        try:
            summary = await self._run(
                lambda session: record_provider_events(session, events, salt=self.salt, now=now)
            )
        except _Unavailable:
            return JSONResponse({"error": "database unavailable, try again"}, status_code=503)
        return JSONResponse(summary.as_dict())


async def _health(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> Starlette:
    """The web app of ``nurture serve``.

    Args:
        settings: The settings (secrets, salt, public URL, webhook key, community name).
        engine: The database engine, already migrated; default: one on the configured
            database, disposed of when the app stops.
        clock: The current time (timestamp checks, suppression times).

    Returns:
        The Starlette app.
    """
    owned = engine is None
    database = engine or create_database_engine(settings.resolved_database_url, pool_pre_ping=True)
    routes = _App(settings, database, clock)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if owned:
            database.dispose()

    return Starlette(
        routes=[
            Route("/health", _health, methods=["GET"]),
            Route("/unsubscribe/{token}", routes.unsubscribe_form, methods=["GET"]),
            Route("/unsubscribe/{token}", routes.unsubscribe, methods=["POST"]),
            Route("/preferences/{token}", routes.preferences_form, methods=["GET"]),
            Route("/preferences/{token}", routes.save_preferences, methods=["POST"]),
            Route("/webhooks/sendgrid", routes.sendgrid_webhook, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
