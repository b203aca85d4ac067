"""The web app of ``nurture serve``: unsubscribe and preference pages, the provider webhook.

Routes:

- ``GET /unsubscribe/{token}``: asks to confirm; a GET never changes anything (mail scanners
  follow links).
- ``POST /unsubscribe/{token}``: RFC 8058 one-click unsubscribe (``List-Unsubscribe=One-Click``)
  and the page's button: puts the address on the suppression list, answers 200, no redirect.
- ``GET /preferences/{token}``, ``POST /preferences/{token}``: the journey categories the member
  receives (those the workspace's journeys use, each with its description), the language they
  are written in, a pause of every email for 1 or 4 weeks, unsubscribe from everything; a member
  who unsubscribed may resubscribe there (``action=resubscribe``), never an address that
  bounced or complained. A form asking for what the page does not offer gets a 400.
- ``POST /webhooks/sendgrid``: SendGrid's signed Event Webhook.
- ``GET /health``: ``ok``.
- ``/api/v1/...``: the HTTP API (:mod:`nurture.web.api`): members, events, answers.
- ``GET /questionnaire/{token}``, ``POST /questionnaire/{token}``: the onboarding questionnaire
  as a form, in the member's language (:mod:`nurture.web.questionnaire_form`).
- ``POST /webhooks/integrations/{name}``: a community platform's signed webhook, mapped by the
  workspace's ``integrations/<name>.yaml`` (:mod:`nurture.web.inbound`).

The signed token in the link is the member's only credential; a token acts only on the member
whose current address it was made for (``find_token_member``). A request that cannot be served
gets a 4xx page (400 for a link that does not work), or a 503 when the database is busy or
unavailable: never a 500 for something a client sent.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar
from urllib.parse import parse_qs

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from nurture.delivery.events import decode_event_batch, record_provider_events
from nurture.delivery.rendering import resolve_language
from nurture.delivery.suppression import (
    SuppressionReason,
    find_suppression,
    resubscribe_address,
    suppress_address,
)
from nurture.delivery.unsubscribe import InvalidUnsubscribeTokenError, find_token_member
from nurture.errors import ConfigurationError
from nurture.settings import Settings
from nurture.storage import create_database_engine, session_scope
from nurture.storage.models import Member, utcnow
from nurture.web import pages
from nurture.web.api import api_routes
from nurture.web.inbound import inbound_routes
from nurture.web.preferences import (
    InvalidPreferenceForm,
    PreferenceChoice,
    PreferenceOptions,
    load_preference_options,
    pause_end,
    read_preference_form,
)
from nurture.web.questionnaire_form import questionnaire_routes
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


class _App:
    """The routes, bound to the settings and the database engine."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        clock: Callable[[], dt.datetime],
        options: PreferenceOptions,
    ):
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.options = options
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

    def _language(self, member: Member) -> str:
        """The language of the member's pages."""
        return pages.page_language(resolve_language(member.language, self.options.languages))

    # --- unsubscribe ------------------------------------------------------------------------

    async def unsubscribe_form(self, request: Request) -> Response:
        """GET: the confirmation page (changes nothing)."""
        token = request.path_params["token"]

        def read(session: Session) -> str:
            member = self._member(session, token)
            return pages.unsubscribe_page(
                self._language(member),
                community=self.options.community_name,
                email=member.email,
                suppressed=find_suppression(session, member.email, self.salt) is not None,
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
                self._language(member),
                community=self.options.community_name,
                email=member.email,
            )

        return await self._page(write)

    # --- preferences ------------------------------------------------------------------------

    async def preferences_form(self, request: Request) -> Response:
        """GET: the preference page."""
        token = request.path_params["token"]
        return await self._page(lambda session: self._preferences(session, token))

    async def save_preferences(self, request: Request) -> Response:
        """POST: save the member's choices, resubscribe, or unsubscribe from everything."""
        token = request.path_params["token"]
        try:
            body = await _read_body(request, MAX_FORM_BYTES)
            form = parse_qs(body.decode("utf-8"), max_num_fields=20, strict_parsing=False)
        except (_BodyTooLarge, UnicodeDecodeError, ValueError):
            form = {}
        if form.get("token") != [token]:
            return await self._refused(token, "form_unreadable")
        try:
            choice = read_preference_form(form, self.options)
        except InvalidPreferenceForm as exc:
            logger.info("refused preference form: %s", exc)
            return await self._refused(token, "invalid_choice")
        return await self._page(lambda session: self._save(session, token, choice))

    def _save(self, session: Session, token: str, choice: PreferenceChoice) -> str:
        """Apply ``choice`` to the member of ``token``; the page that answers it."""
        member = self._member(session, token)
        now = self.clock()
        if choice.resubscribe:
            done = resubscribe_address(session, member.email, self.salt)
            if done:
                logger.info("member %s resubscribed (preference page)", member.id)
            return self._preferences(session, token, member=member, resubscribed=done)
        if choice.everything:
            if suppress_address(
                session,
                member.email,
                self.salt,
                SuppressionReason.UNSUBSCRIBED,
                "preferences",
                now=now,
            ):
                logger.info("member %s unsubscribed (preference page)", member.id)
            return self._preferences(session, token, member=member, saved=True)
        shown = self.options.categories
        kept = [c for c in member.unsubscribed_categories or [] if c not in shown]
        member.unsubscribed_categories = kept + [c for c in shown if c not in choice.categories]
        if choice.language is not None:
            member.language = choice.language
        member.paused_until = pause_end(choice.pause, now, member.paused_until)
        session.flush()
        return self._preferences(session, token, member=member, saved=True)

    def _preferences(
        self,
        session: Session,
        token: str,
        *,
        member: Member | None = None,
        saved: bool = False,
        resubscribed: bool = False,
    ) -> str:
        member = member or self._member(session, token)
        entry = find_suppression(session, member.email, self.salt)
        now = self.clock()
        paused = member.paused_until if member.paused_until and member.paused_until > now else None
        return pages.preferences_page(
            self._language(member),
            community=self.options.community_name,
            email=member.email,
            token=token,
            unsubscribed_categories=list(member.unsubscribed_categories or []),
            suppressed=entry is not None,
            saved=saved,
            categories=self.options.categories,
            languages=self.options.languages,
            language=resolve_language(member.language, self.options.languages),
            paused_until=_local_date(paused, member.time_zone) if paused else None,
            resubscribable=entry is not None and entry.reason == SuppressionReason.UNSUBSCRIBED,
            resubscribed=resubscribed,
        )

    async def _refused(self, token: str, text_key: str) -> Response:
        """A 400 page saying why the form was refused, in the member's language."""

        def read(session: Session) -> str:
            lang = self._language(self._member(session, token))
            return pages.message_page(lang, "preferences_title", text_key)

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
        events = decode_event_batch(body)
        if events is None:
            return JSONResponse({"error": "body: expected a JSON array of events"}, 400)
        now = self.clock()
        try:
            summary = await self._run(
                lambda session: record_provider_events(session, events, salt=self.salt, now=now)
            )
        except _Unavailable:
            return JSONResponse({"error": "database unavailable, try again"}, status_code=503)
        return JSONResponse(summary.as_dict())


def _local_date(moment: dt.datetime, time_zone: str | None) -> dt.date:
    """The day ``moment`` falls on in ``time_zone`` (UTC when the zone is unknown)."""
    try:
        zone: dt.tzinfo = zoneinfo.ZoneInfo(time_zone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    return moment.astimezone(zone).date()


async def _health(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    options: PreferenceOptions | None = None,
) -> Starlette:
    """The web app of ``nurture serve``.

    Args:
        settings: The settings (secrets, salt, public URL, webhook key, community name).
        engine: The database engine, already migrated; default: one on the configured
            database, disposed of when the app stops.
        clock: The current time (timestamp checks, suppression times, pauses).
        options: What the preference page offers; default: read from the workspace the
            settings name (``load_preference_options``).

    Returns:
        The Starlette app.
    """
    owned = engine is None
    database = engine or create_database_engine(settings.resolved_database_url, pool_pre_ping=True)
    routes = _App(settings, database, clock, options or load_preference_options(settings))

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
            *api_routes(settings, database, clock),
            *inbound_routes(settings, database, clock),
            *questionnaire_routes(settings, database, clock),
        ],
        lifespan=lifespan,
    )
