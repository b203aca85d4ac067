"""Embedding cache: a text is embedded once per embedder, ever (keyed by a hash of the text).

An embedder is a model on a backend (``embedder.name``): each backend's vectors are kept apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import LargeBinary, select, type_coerce
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from nurture.embedding.embedders import Embedder
from nurture.storage.database import among, plain_connection
from nurture.storage.models import EmbeddingCacheEntry, table_of

__all__ = ["embed_texts_cached", "text_hash"]

_LOOKUP_BATCH = 500


def text_hash(text: str) -> str:
    """The cache key of ``text``: SHA-256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embed_texts_cached(session: Session, embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Embed ``texts``, embedding only those the embedder has not cached, each unique text once.

    New vectors are added to the session (the caller commits).

    Returns:
        An ``(len(texts), embedder.dim)`` float32 array, rows in the order of ``texts``.
    """
    hashes = [text_hash(text) for text in texts]
    unique: dict[str, str] = dict(zip(hashes, texts, strict=True))
    found: dict[str, np.ndarray] = {}
    keys = list(unique)
    connection = plain_connection(session)
    for start in range(0, len(keys), _LOOKUP_BATCH):
        batch = keys[start : start + _LOOKUP_BATCH]
        # The stored bytes, read as a vector in place (the column type would copy each).
        rows = connection.execute(
            select(
                EmbeddingCacheEntry.text_hash,
                type_coerce(EmbeddingCacheEntry.vector, LargeBinary),
            ).where(
                EmbeddingCacheEntry.model == embedder.name,
                among(session, EmbeddingCacheEntry.text_hash, batch),
            )
        ).all()
        found.update({key: np.frombuffer(stored, dtype=np.float32) for key, stored in rows})
    missing = [key for key in keys if key not in found]
    if missing:
        vectors = embedder.embed([unique[key] for key in missing])
        new_entries: list[dict[str, Any]] = []
        for key, vector in zip(missing, vectors, strict=True):
            found[key] = vector
            new_entries.append(
                {"model": embedder.name, "text_hash": key, "dim": embedder.dim, "vector": vector}
            )
        _store(session, new_entries)
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.stack([found[key] for key in hashes]).astype(np.float32, copy=False)


def _store(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert cache entries; an entry another worker stored meanwhile is kept as it is.

    Two workers that embed the same text at once (concurrent profiling chunks all embed the
    option labels) both miss it in the cache; with a plain insert the second one's commit fails
    on the primary key. ``ON CONFLICT DO NOTHING`` lets it pass (PostgreSQL and SQLite).
    """
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        session.add_all(EmbeddingCacheEntry(**row) for row in rows)
        session.flush()
        return
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table_of(EmbeddingCacheEntry)).on_conflict_do_nothing()
    connection = plain_connection(session)
    for start in range(0, len(rows), _LOOKUP_BATCH):
        connection.execute(statement, rows[start : start + _LOOKUP_BATCH])
