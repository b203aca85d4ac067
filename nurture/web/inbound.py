"""``POST /webhooks/integrations/{name}``: a community platform's signed webhook, mapped to records.

The workspace's ``integrations/<name>.yaml`` says how the platform signs its requests and how
its payloads become members and activity events (:mod:`nurture.workspace.integrations`). A
request is answered:

- 404: no integration has that name; 503: its secret's environment variable is not set, or the
  integration files do not load;
- 413: a body over ``MAX_INBOUND_BYTES``; 403: the signature is missing or wrong;
- 422: the body is not JSON, or a record it maps to is refused by the import rules (each named:
  rule, record, field, reason); nothing is stored;
- 200: the rules that applied and what was stored. A payload no rule matches is accepted and
  changes nothing (a platform sends many kinds of events).

Members are upserted and events deduplicated by their key (map the platform's own event id to
``idempotency_key``), so a delivery the platform retries changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nurture.errors import NurtureError
from nurture.ingest.fields import load_json
from nurture.ingest.records import store_activity_records, store_member_records
from nurture.settings import Settings
from nurture.storage import session_scope
from nurture.workspace.integrations import Integration, Signature, map_payload

__all__ = ["MAX_INBOUND_BYTES", "inbound_routes", "signature_matches"]

logger = logging.getLogger(__name__)

MAX_INBOUND_BYTES = 1024 * 1024
"""Largest webhook body accepted from a platform."""


class _Refused(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.status = status
        self.body = body


def signature_matches(
    signature: Signature, secret: str, body: bytes, presented: str | None
) -> bool:
    """Whether ``presented`` (the header's value) is the HMAC-SHA256 of ``body`` with ``secret``."""
    if not presented or not presented.startswith(signature.prefix):
        return False
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    given = presented[len(signature.prefix) :].strip()
    try:
        if signature.encoding == "hex":
            received = bytes.fromhex(given)
        else:
            received = base64.b64decode(given, validate=True)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(digest, received)


class _Inbound:
    def __init__(self, settings: Settings, engine: Engine, clock: Callable[[], dt.datetime]):
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self._integrations: dict[str, Integration] | None = None
        self._languages: tuple[str, ...] | None = None

    def _load(self) -> tuple[dict[str, Integration], tuple[str, ...]]:
        if self._integrations is None or self._languages is None:
            from nurture.workspace import load_workspace_config
            from nurture.workspace.integrations import load_integrations

            try:
                self._integrations = load_integrations(self.settings.workspace)
                languages = load_workspace_config(self.settings.workspace).languages
                self._languages = tuple(languages)
            except NurtureError as exc:
                logger.error("inbound webhook: the workspace does not load: %s", exc)
                raise _Refused(503, {"error": "the integration files do not load"}) from None
        return self._integrations, self._languages

    async def receive(self, request: Request) -> Response:
        """POST: check the signature, map the payload, store its records (all or none)."""
        name = request.path_params["name"]
        try:
            answer = await self._receive(request, name)
        except _Refused as refused:
            return JSONResponse(refused.body, status_code=refused.status)
        return JSONResponse(answer)

    async def _receive(self, request: Request, name: str) -> dict[str, Any]:
        integrations, languages = self._load()
        integration = integrations.get(name)
        if integration is None:
            raise _Refused(404, {"error": f"no integration {name!r} in the workspace"})
        secret = os.environ.get(integration.signature.secret_env, "")
        if not secret:
            logger.error("integration %s: %s is not set", name, integration.signature.secret_env)
            raise _Refused(503, {"error": f"integration {name!r} is not configured"})
        body = await _read_body(request)
        presented = request.headers.get(integration.signature.header)
        if not signature_matches(integration.signature, secret, body, presented):
            logger.warning("integration %s: refused a request with a bad signature", name)
            raise _Refused(403, {"error": f"missing or wrong {integration.signature.header}"})
        try:
            payload = load_json(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _Refused(422, {"error": f"body: invalid JSON: {exc}"}) from None
        mapped = map_payload(integration, payload, dict(request.headers))
        if not mapped.rules:
            return {"rules": [], "members": None, "events": None}
        now = self.clock()

        def store(session: Session) -> dict[str, Any]:
            members = store_member_records(session, mapped.members, languages=languages, now=now)
            problems = [
                {"rule": mapped.member_rules[p.index], "record": "member", **p.as_dict()}
                for p in members.problems
            ]
            events = store_activity_records(session, mapped.events, now=now)
            problems += [
                {"rule": mapped.event_rules[p.index], "record": "event", **p.as_dict()}
                for p in events.problems
            ]
            if problems:
                raise _Refused(
                    422, {"error": "the payload maps to refused records", "problems": problems}
                )
            return {
                "rules": mapped.rules,
                "members": members.counts(),
                "events": events.counts(),
            }

        def in_transaction() -> dict[str, Any]:
            try:
                with session_scope(self.engine) as session:
                    return store(session)
            except (IntegrityError, DataError) as exc:
                reason = str(getattr(exc, "orig", exc)).strip().splitlines()[:1]
                raise _Refused(
                    422, {"error": f"the database refused the records: {''.join(reason)}"}
                ) from None
            except SQLAlchemyError:
                logger.exception("inbound webhook: database error")
                raise _Refused(503, {"error": "database unavailable, try again"}) from None

        return await run_in_threadpool(in_transaction)


async def _read_body(request: Request) -> bytes:
    too_large = _Refused(413, {"error": f"body larger than {MAX_INBOUND_BYTES} bytes"})
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_INBOUND_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_INBOUND_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def inbound_routes(
    settings: Settings, engine: Engine, clock: Callable[[], dt.datetime]
) -> list[Route]:
    """The route of the platforms' webhooks, to mount in the web app.

    Args:
        settings: The settings (the workspace holding ``integrations/``).
        engine: The database engine, migrated.
        clock: The current time (record checks).
    """
    inbound = _Inbound(settings, engine, clock)
    return [Route("/webhooks/integrations/{name}", inbound.receive, methods=["POST"])]
