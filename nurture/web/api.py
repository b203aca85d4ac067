"""The HTTP API of ``nurture serve``: members, activity events and answers, as they happen.

Routes (documented in ``docs/api.md``; the schema is served at ``GET /api/v1/openapi.json``):

- ``POST /api/v1/members``: ``{"members": [...]}``, create or update by external id, else
  e-mail; the fields of a members import.
- ``POST /api/v1/events``: ``{"events": [...]}``, activity events (the fields of an activity
  import); an event already stored is unchanged.
- ``POST /api/v1/answers``: ``{"answers": [...]}``, questionnaire answers (as JSON Lines).
- ``GET /api/v1/members/{ref}``: one member, by external id or e-mail (scope ``read``).

Every request but the schema's carries ``Authorization: Bearer <key>`` (``nurture api-key create``):
an unknown or revoked key gets 401, a read key writing gets 403. Every POST carries an
``Idempotency-Key`` header: the first request with a key is applied and its answer kept; a replay
gets the same answer and changes nothing (``Idempotent-Replayed: true``); the same key with another
body gets 422. Keys are remembered ``Settings.api_idempotency_days``; older ones are pruned (by each
process, at most once every ``PRUNE_EVERY``) and may be used again. A batch holds at most
``MAX_BATCH`` records and ``MAX_API_BYTES`` bytes (else 413); a key makes at most
``Settings.api_rate_limit_per_minute`` requests a minute (else 429 with ``Retry-After``). Records
are checked by the rules of file imports; one refused record refuses the batch: 422 naming each
problem (index, field, reason), nothing stored. A database that is busy or down gets 503: never a
500 for something a client sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nurture.errors import NurtureError
from nurture.ingest.fields import load_json
from nurture.ingest.records import (
    RecordsResult,
    store_activity_records,
    store_answer_records,
    store_member_records,
)
from nurture.settings import Settings
from nurture.storage import session_scope
from nurture.storage.models import ApiRequest, ApiScope, Member
from nurture.web.api_keys import find_api_key

__all__ = [
    "IDEMPOTENCY_HEADER",
    "MAX_API_BYTES",
    "MAX_BATCH",
    "PRUNE_EVERY",
    "RateLimiter",
    "api_routes",
    "openapi_schema",
]

logger = logging.getLogger(__name__)

PRUNE_EVERY = dt.timedelta(hours=1)
"""How often each API process deletes the idempotency keys older than the remembered days."""

MAX_BATCH = 1000
"""Most records in one request."""
MAX_API_BYTES = 4 * 1024 * 1024
"""Largest request body accepted."""
IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_WRITES = {"members": "members", "events": "events", "answers": "answers"}


class _Refused(Exception):
    """A request answered with a 4xx or 503: its status and JSON body."""

    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.body: dict[str, Any] = {"error": error, **extra}
        self.headers: dict[str, str] = {}


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse(body, status_code=status, headers={**_HEADERS, **(headers or {})})


class RateLimiter:
    """A token bucket per API key: ``per_minute`` requests a minute, in bursts of as many."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait(self, key_id: int) -> float:
        """Take a request for ``key_id``: 0 when allowed, else seconds until one is."""
        rate = self.per_minute / 60.0
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key_id, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / rate


@dataclass
class _Workspace:
    """What checking records needs from the workspace, read on first use."""

    settings: Settings
    _languages: tuple[str, ...] | None = None
    _questionnaire: Any = None

    def languages(self) -> tuple[str, ...]:
        if self._languages is None:
            from nurture.workspace import load_workspace_config

            self._languages = tuple(load_workspace_config(self.settings.workspace).languages)
        return self._languages

    def questionnaire(self) -> Any:
        if self._questionnaire is None:
            from nurture.workspace import load_questionnaire

            self._questionnaire = load_questionnaire(
                self.settings.questionnaire_path, languages=self.languages()
            )
        return self._questionnaire


class _Api:
    """The API's routes, bound to the settings, the database and the clock."""

    def __init__(self, settings: Settings, engine: Engine, clock: Callable[[], dt.datetime]):
        self.engine = engine
        self.clock = clock
        self.workspace = _Workspace(settings)
        self.limiter = RateLimiter(settings.api_rate_limit_per_minute)
        self.remember_for = dt.timedelta(days=settings.api_idempotency_days)
        self.pruned_at: dt.datetime | None = None

    # --- authentication ---------------------------------------------------------------------

    async def _authenticate(self, request: Request, scope: ApiScope) -> int:
        """The id of the request's key, allowed ``scope``; refused otherwise."""
        header = request.headers.get("authorization", "")
        kind, _, presented = header.partition(" ")
        if kind.lower() != "bearer" or not presented.strip():
            refused = _Refused(401, "missing API key: send 'Authorization: Bearer <key>'")
            refused.headers["WWW-Authenticate"] = "Bearer"
            raise refused
        now = self.clock()

        def check(session: Session) -> tuple[int, ApiScope] | None:
            key = find_api_key(session, presented.strip())
            if key is None:
                return None
            key.last_used_at = now
            return key.id, key.scope

        found = await self._run(check)
        if found is None:
            refused = _Refused(401, "unknown or revoked API key")
            refused.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            raise refused
        key_id, key_scope = found
        if scope is ApiScope.WRITE and key_scope is not ApiScope.WRITE:
            raise _Refused(403, f"this key's scope is {key_scope.value!r}; writing needs 'write'")
        wait = self.limiter.wait(key_id)
        if wait > 0:
            refused = _Refused(429, "too many requests for this key; try again later")
            refused.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            raise refused
        return key_id

    # --- database ---------------------------------------------------------------------------

    async def _run(self, work: Callable[[Session], Any]) -> Any:
        def in_transaction() -> Any:
            try:
                with session_scope(self.engine) as session:
                    return work(session)
            except SQLAlchemyError:
                logger.exception("API: database error")
                raise _Refused(503, "database unavailable, try again") from None

        return await run_in_threadpool(in_transaction)

    # --- routes -----------------------------------------------------------------------------

    async def write(self, request: Request) -> Response:
        """POST ``/api/v1/{members,events,answers}``: a batch of records, all or none."""
        kind = request.url.path.rsplit("/", 1)[-1]
        try:
            key_id = await self._authenticate(request, ApiScope.WRITE)
            idempotency_key = request.headers.get(IDEMPOTENCY_HEADER, "")
            if not _IDEMPOTENCY_KEY.match(idempotency_key):
                raise _Refused(
                    400,
                    f"header {IDEMPOTENCY_HEADER}: expected 1 to 200 printable ASCII "
                    "characters, unique to this request (a UUID)",
                )
            body = await _read_body(request)
            records = _records(body, kind)
            body_hash = hashlib.sha256(body).hexdigest()
            status, answer, replayed = await self._apply(
                key_id, idempotency_key, kind, body_hash, records
            )
        except _Refused as refused:
            return _json(refused.body, refused.status, refused.headers)
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return _json(answer, status, headers)

    async def _apply(
        self, key_id: int, idempotency_key: str, kind: str, body_hash: str, records: list[Any]
    ) -> tuple[int, dict[str, Any], bool]:
        """Store the batch once per idempotency key: (status, answer, whether a replay)."""
        now = self.clock()
        store = self._store(kind, now)
        route = f"POST /api/v1/{kind}"

        forgotten_before = now - self.remember_for
        prune = self.pruned_at is None or now - self.pruned_at >= PRUNE_EVERY

        def work(session: Session) -> tuple[int, dict[str, Any], bool]:
            if prune:
                session.execute(delete(ApiRequest).where(ApiRequest.created_at < forgotten_before))
            done = session.scalars(
                select(ApiRequest).where(
                    ApiRequest.api_key_id == key_id,
                    ApiRequest.idempotency_key == idempotency_key,
                )
            ).first()
            if done is not None and done.created_at < forgotten_before:
                session.delete(done)  # forgotten: the key may be used again
                session.flush()
                done = None
            if done is not None:
                if done.body_hash != body_hash or done.route != route:
                    raise _Refused(
                        422,
                        f"header {IDEMPOTENCY_HEADER}: {idempotency_key!r} was used for another "
                        "request; use a new key for a new request",
                    )
                return done.status_code, dict(done.response), True
            try:
                result = store(session, records)
            except (IntegrityError, DataError) as exc:
                reason = str(getattr(exc, "orig", exc)).strip().splitlines()[:1]
                raise _Refused(
                    422, "the database refused the batch", problems=[{"reason": "".join(reason)}]
                ) from None
            if result.problems:
                raise _Refused(
                    422,
                    f"{len(result.problems)} of {len(records)} {kind} refused; nothing stored",
                    problems=[problem.as_dict() for problem in result.problems],
                )
            answer: dict[str, Any] = {"received": len(records), **result.counts()}
            session.add(
                ApiRequest(
                    api_key_id=key_id,
                    idempotency_key=idempotency_key,
                    route=route,
                    body_hash=body_hash,
                    status_code=200,
                    response=answer,
                    created_at=now,
                )
            )
            session.flush()
            return 200, answer, False

        for attempt in (1, 2):
            try:
                outcome: tuple[int, dict[str, Any], bool] = await self._run_once(work)
            except IntegrityError:
                # The same key arrived twice at once: the other request won; replay its answer.
                if attempt == 2:
                    break
            else:
                if prune:
                    self.pruned_at = now
                return outcome
        raise _Refused(503, "database conflict, try again")

    async def _run_once(self, work: Callable[[Session], Any]) -> Any:
        def in_transaction() -> Any:
            try:
                with session_scope(self.engine) as session:
                    return work(session)
            except IntegrityError:
                raise
            except SQLAlchemyError:
                logger.exception("API: database error")
                raise _Refused(503, "database unavailable, try again") from None

        return await run_in_threadpool(in_transaction)

    def _store(
        self, kind: str, now: dt.datetime
    ) -> Callable[[Session, Sequence[Any]], RecordsResult]:
        """How a batch of ``kind`` is checked and stored (the workspace read first)."""
        try:
            if kind == "members":
                languages = self.workspace.languages()
                return lambda session, records: store_member_records(
                    session, records, languages=languages, now=now
                )
            if kind == "answers":
                questionnaire = self.workspace.questionnaire()
                return lambda session, records: store_answer_records(
                    session, records, questionnaire, now=now
                )
        except NurtureError as exc:
            logger.error("API: the workspace does not load: %s", exc)
            raise _Refused(503, "the workspace does not load; the operator must fix it") from None
        return lambda session, records: store_activity_records(session, records, now=now)

    async def read_member(self, request: Request) -> Response:
        """GET ``/api/v1/members/{ref}``: a member's fields, by external id or e-mail."""
        ref = request.path_params["ref"]
        try:
            await self._authenticate(request, ApiScope.READ)

            def read(session: Session) -> dict[str, Any] | None:
                member = session.scalars(select(Member).where(Member.external_id == ref)).first()
                if member is None and "@" in ref:
                    member = session.scalars(
                        select(Member).where(Member.email == ref.lower())
                    ).first()
                return None if member is None else _member_json(member)

            found = await self._run(read)
        except _Refused as refused:
            return _json(refused.body, refused.status, refused.headers)
        if found is None:
            return _json({"error": f"no member has external id or e-mail {ref!r}"}, 404)
        return _json(found)

    async def schema(self, request: Request) -> Response:
        """GET ``/api/v1/openapi.json``: the API's OpenAPI 3.1 schema."""
        return _json(openapi_schema())


async def _read_body(request: Request) -> bytes:
    """The body, refused with 413 when larger than ``MAX_API_BYTES``."""
    too_large = _Refused(413, f"body larger than {MAX_API_BYTES} bytes; send smaller batches")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_API_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_API_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _records(body: bytes, kind: str) -> list[Any]:
    """The batch a body holds: ``{"<kind>": [records]}``; refused with 413 or 422."""
    try:
        data = load_json(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Refused(422, "body: expected UTF-8 JSON", problems=[]) from None
    except ValueError as exc:
        raise _Refused(422, f"body: invalid JSON: {exc}", problems=[]) from None
    if type(data) is not dict or set(data) != {kind} or type(data[kind]) is not list:
        raise _Refused(
            422, f'body: expected a JSON object {{"{kind}": [...]}} and nothing else', problems=[]
        )
    records: list[Any] = data[kind]
    if not records:
        raise _Refused(422, f"body: {kind!r} is empty", problems=[])
    if len(records) > MAX_BATCH:
        raise _Refused(
            413, f"body: {len(records)} {kind}, more than {MAX_BATCH}; send smaller batches"
        )
    return records


def _member_json(member: Member) -> dict[str, Any]:
    return {
        "external_id": member.external_id,
        "email": member.email,
        "first_name": member.first_name,
        "last_name": member.last_name,
        "language": member.language,
        "time_zone": member.time_zone,
        "birthday": member.birthday.isoformat() if member.birthday else None,
        "joined_at": member.joined_at.isoformat(),
        "consent_status": str(member.consent_status),
        "attributes": member.attributes or {},
    }


def api_routes(settings: Settings, engine: Engine, clock: Callable[[], dt.datetime]) -> list[Route]:
    """The API's routes, to mount in the web app.

    Args:
        settings: The settings (workspace, rate limit).
        engine: The database engine, migrated.
        clock: The current time (key use, record checks).
    """
    api = _Api(settings, engine, clock)
    return [
        Route("/api/v1/openapi.json", api.schema, methods=["GET"]),
        Route("/api/v1/members", api.write, methods=["POST"]),
        Route("/api/v1/events", api.write, methods=["POST"]),
        Route("/api/v1/answers", api.write, methods=["POST"]),
        Route("/api/v1/members/{ref}", api.read_member, methods=["GET"]),
    ]


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the API (the fields are those of file imports)."""
    from nurture.ingest import ACTIVITY_TYPES, CONSENT_STATUSES

    text = {"type": "string"}
    member = {
        "type": "object",
        "required": ["email"],
        "properties": {
            "external_id": text,
            "email": {"type": "string", "format": "email"},
            "first_name": text,
            "last_name": text,
            "language": {"type": "string", "description": "one of the workspace's languages"},
            "time_zone": {"type": "string", "description": "IANA time zone"},
            "birthday": {"type": "string", "format": "date"},
            "joined_at": {"type": "string", "format": "date-time"},
            "consent_status": {"type": "string", "enum": [str(s) for s in CONSENT_STATUSES]},
            "consent_source": text,
        },
        "additionalProperties": {"description": "any other field is a member attribute"},
    }
    event = {
        "type": "object",
        "required": ["member", "type", "occurred_at"],
        "additionalProperties": False,
        "properties": {
            "member": {"type": "string", "description": "external id or e-mail"},
            "type": {"type": "string", "enum": list(ACTIVITY_TYPES)},
            "occurred_at": {"type": "string", "format": "date-time"},
            "content_key": text,
            "properties": {"type": "object"},
            "idempotency_key": {"type": "string", "maxLength": 128},
        },
    }
    answer = {
        "type": "object",
        "required": ["member", "question", "value"],
        "additionalProperties": False,
        "properties": {
            "member": {"type": "string", "description": "external id or e-mail"},
            "question": {"type": "string", "description": "a questionnaire key"},
            "value": {"description": "text, a number, or a list of choices"},
            "answered_at": {"type": "string", "format": "date-time"},
        },
    }
    counts = {
        "type": "object",
        "properties": {
            name: {"type": "integer"} for name in ("received", "stored", "updated", "unchanged")
        },
    }
    problem = {
        "type": "object",
        "properties": {
            "error": text,
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "field": {"type": ["string", "null"]},
                        "reason": text,
                    },
                },
            },
        },
    }
    refusals = {
        "400": "missing or malformed Idempotency-Key header",
        "401": "missing, unknown or revoked API key",
        "403": "the key's scope does not allow it",
        "413": f"body over {MAX_API_BYTES} bytes or more than {MAX_BATCH} records",
        "422": "a record refused (each named: index, field, reason), or the idempotency key "
        "reused with another body; nothing stored",
        "429": "too many requests for this key (Retry-After)",
        "503": "the database is unavailable; try again",
    }

    def write(kind: str, item: dict[str, Any], summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "security": [{"apiKey": []}],
                "parameters": [
                    {
                        "name": IDEMPOTENCY_HEADER,
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 200},
                        "description": "unique per request: a replay changes nothing",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": [kind],
                                "additionalProperties": False,
                                "properties": {
                                    kind: {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": MAX_BATCH,
                                        "items": item,
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "stored (or replayed: Idempotent-Replayed: true)",
                        "content": {"application/json": {"schema": counts}},
                    },
                    **{
                        status: {
                            "description": why,
                            "content": {"application/json": {"schema": problem}},
                        }
                        for status, why in refusals.items()
                    },
                },
            }
        }

    return {
        "openapi": "3.1.0",
        "info": {"title": "nurture API", "version": "1"},
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a key from `nurture api-key create`",
                }
            }
        },
        "paths": {
            "/api/v1/members": write(
                "members", member, "Create or update members (by external id, else e-mail)"
            ),
            "/api/v1/events": write("events", event, "Record activity events"),
            "/api/v1/answers": write("answers", answer, "Record questionnaire answers"),
            "/api/v1/members/{ref}": {
                "get": {
                    "summary": "Read a member by external id or e-mail (scope read)",
                    "security": [{"apiKey": []}],
                    "parameters": [{"name": "ref", "in": "path", "required": True, "schema": text}],
                    "responses": {
                        "200": {
                            "description": "the member",
                            "content": {"application/json": {"schema": member}},
                        },
                        "404": {"description": "no such member"},
                    },
                }
            },
        },
    }
