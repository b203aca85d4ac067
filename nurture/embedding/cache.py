"""Embedding cache: a text is embedded once per embedder, ever (keyed by a hash of the text).

An embedder is a model on a backend (``embedder.name``): each backend's vectors are kept apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np
from sqlalchemy import LargeBinary, select, type_coerce
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from nurture.embedding.embedders import Embedder
from nurture.storage.database import among, plain_connection
from nurture.storage.models import EmbeddingCacheEntry, table_of

__all__ = ["CachedEmbedding", "embed_texts_cached", "start_embedding_cached", "text_hash"]

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
    return start_embedding_cached(session, embedder, texts).result()


def start_embedding_cached(
    session: Session,
    embedder: Embedder,
    texts: Sequence[str],
    background: Executor | None = None,
) -> CachedEmbedding:
    """Look ``texts`` up in the cache and start embedding the others, each unique text once.

    With ``background``, the texts the cache misses are embedded there while the caller goes on
    (the session stays in the caller's thread); without it, before this returns. The
    embedding's :meth:`~CachedEmbedding.result` adds the new vectors to the session (the caller
    commits) and gives the vectors of ``texts``.
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
    missing_texts = [unique[key] for key in missing]
    embedding: Future[np.ndarray] = Future()
    if not missing:
        embedding.set_result(np.zeros((0, embedder.dim), dtype=np.float32))
    elif background is not None:
        embedding = background.submit(embedder.embed, missing_texts)
    else:
        embedding.set_result(embedder.embed(missing_texts))
    return CachedEmbedding(session, embedder, hashes, found, missing, embedding)


@dataclass(eq=False)
class CachedEmbedding:
    """The vectors of texts, read from the cache or being embedded.

    Made by :func:`start_embedding_cached`.

    Attributes:
        session: Where the new vectors go.
        embedder: The embedder.
        hashes: The texts' cache keys, in their order.
        found: ``{text hash: vector}`` read from the cache (the new ones added on waiting).
        missing: Hashes of the texts being embedded, in the order of ``embedding``'s rows.
        embedding: Their vectors to come.
    """

    session: Session
    embedder: Embedder
    hashes: list[str]
    found: dict[str, np.ndarray]
    missing: list[str]
    embedding: Future[np.ndarray]

    def result(self) -> np.ndarray:
        """Wait for the embedding, add its vectors to the cache, return every text's vector.

        Returns:
            An ``(len(texts), embedder.dim)`` float32 array, rows in the order of the texts.

        Raises:
            Exception: What embedding the texts raised.
        """
        embedder, found = self.embedder, self.found
        if self.missing:
            vectors = dict(zip(self.missing, self.embedding.result(), strict=True))
            found.update(vectors)
            _store(self.session, embedder, vectors)
            self.missing = []
        if not self.hashes:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack([found[key] for key in self.hashes]).astype(np.float32, copy=False)


def _store(session: Session, embedder: Embedder, vectors: dict[str, np.ndarray]) -> None:
    """Insert ``{text hash: vector}`` of ``embedder``; an entry stored meanwhile is kept as it is.

    Two workers that embed the same text at once (concurrent profiling chunks all embed the
    option labels) both miss it in the cache; with a plain insert the second one's commit fails
    on the primary key. ``ON CONFLICT DO NOTHING`` lets it pass (PostgreSQL and SQLite).

    The rows go in the order of their hashes: on PostgreSQL an insert of a key another open
    transaction has just inserted waits for that transaction, and two chunks storing the same
    new texts in different orders would each wait for the other (a deadlock, which aborts one
    of them). In one order, the second waits for the first and then finds its rows there.
    """
    rows = [
        {"model": embedder.name, "text_hash": key, "dim": embedder.dim, "vector": vector}
        for key, vector in sorted(vectors.items(), key=lambda entry: entry[0])
    ]
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
