"""Keys of the HTTP API: made, listed, revoked (``nurture api-key``), checked on each request.

A key reads ``nk_<prefix>_<secret>``: the prefix finds it and names it in lists, the secret
(256 random bits) proves it. Only the SHA-256 of the whole key is stored, so the key is shown
once, when it is made; a lost key is revoked and replaced. A key's scope is ``read`` (read
members) or ``write`` (also create members, events and answers).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.errors import NurtureError
from nurture.storage.models import ApiKey, ApiScope

__all__ = [
    "KEY_PREFIX",
    "ApiKeyError",
    "NewApiKey",
    "create_api_key",
    "find_api_key",
    "hash_api_key",
    "list_api_keys",
    "revoke_api_key",
]

KEY_PREFIX = "nk_"
"""How every key begins (secret scanners may look for it)."""
_KEY = re.compile(r"^nk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[\w .:@/-]{1,100}$")


class ApiKeyError(NurtureError):
    """An API key cannot be made or revoked as asked."""


@dataclass(frozen=True)
class NewApiKey:
    """A key just made: ``key`` is the only time the secret is seen."""

    key: str
    prefix: str
    name: str
    scope: ApiScope


def hash_api_key(key: str) -> str:
    """The SHA-256 (hexadecimal) stored for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(session: Session, name: str, scope: ApiScope, now: dt.datetime) -> NewApiKey:
    """Make a key; only its hash is stored (the caller commits).

    Args:
        session: The database session.
        name: What the key is for (``community-platform``), shown in lists.
        scope: ``read`` or ``write``.
        now: When it is made.

    Returns:
        The key, to show once.

    Raises:
        ApiKeyError: The name is empty, too long or holds odd characters.
    """
    if not _NAME.match(name):
        raise ApiKeyError(
            f"key name {name!r}: expected 1 to 100 letters, digits, spaces or . : @ / - _"
        )
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    session.add(
        ApiKey(name=name, prefix=prefix, key_hash=hash_api_key(key), scope=scope, created_at=now)
    )
    session.flush()
    return NewApiKey(key=key, prefix=prefix, name=name, scope=scope)


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_api_key(session: Session, prefix: str, now: dt.datetime) -> ApiKey:
    """Revoke the key with ``prefix`` (or the whole key): it is refused from now on.

    Raises:
        ApiKeyError: No key has this prefix.
    """
    match = _KEY.match(prefix)
    wanted = match.group(1) if match else prefix.removeprefix(KEY_PREFIX)
    found = session.scalars(select(ApiKey).where(ApiKey.prefix == wanted)).first()
    if found is None:
        raise ApiKeyError(f"no API key has prefix {prefix!r} (see `nurture api-key list`)")
    if found.revoked_at is None:
        found.revoked_at = now
    return found


def find_api_key(session: Session, presented: str) -> ApiKey | None:
    """The live key ``presented`` is, or ``None`` (unknown, malformed or revoked)."""
    match = _KEY.match(presented)
    if match is None:
        return None
    found = session.scalars(select(ApiKey).where(ApiKey.prefix == match.group(1))).first()
    if found is None or found.revoked_at is not None:
        return None
    if not hmac.compare_digest(found.key_hash, hash_api_key(presented)):
        return None
    return found
