"""Content embeddings: the text that stands for a content item, embedded once per model."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.embedding import Embedder, embed_texts_cached, library_embedder
from nurture.storage import plain_connection
from nurture.storage.models import ContentItem

__all__ = [
    "BODY_START_CHARS",
    "LIBRARY_COLUMNS",
    "content_text",
    "embed_content_items",
    "load_content_vectors",
    "load_library_vectors",
]

BODY_START_CHARS = 1000
"""How much of the body (in characters) stands for an item next to its title, summary and tags."""

# Markdown markup that carries no meaning for an embedding: headings, emphasis, links' URLs.
# The text is cleaned as ``re.sub(r"\s+", " ", re.sub(MARKUP, " ", text)).strip()`` would
# with ``MARKUP = r"[#*_`>|]+|\]\([^)]*\)|!\[|\["``, in passes that are each one scan: a link's
# ``](url)`` first (no other part of the pattern holds ``]``, so the links found are those
# of the whole pattern), then ``![``, then each markup character (a run of them made one
# space, or each made one, gives the same once the spaces are collapsed).
_LINK = re.compile(r"\]\([^)]*\)")
_MARKUP_CHARACTERS = "#*_`>|["


def _clean(text: str) -> str:
    if "](" in text:
        text = _LINK.sub(" ", text)
    if "![" in text:
        text = text.replace("![", " ")
    for character in _MARKUP_CHARACTERS:
        if character in text:
            text = text.replace(character, " ")
    return " ".join(text.split())


def _body_start(body: str, limit: int = BODY_START_CHARS) -> str:
    text = _clean(body)
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > 0 else limit]


def content_text(item: ContentItem) -> str:
    """The text embedded for a content item: title, summary, tags and the start of the body.

    Only this function decides what an item "is about", so the embedding cache (keyed by the
    hash of this text) re-embeds an item only when one of these parts changes.

    Args:
        item: The content item.

    Returns:
        One string, parts separated by new lines, empty parts left out.
    """
    return _text(item.title, item.summary, item.tags, item.body)


def _text(title: str | None, summary: str | None, tags: list[Any] | None, body: str | None) -> str:
    """:func:`content_text` of an item's parts."""
    tag_text = ", ".join(str(tag).replace("_", " ").replace("-", " ") for tag in tags or [])
    parts = [_clean(title or ""), _clean(summary or ""), tag_text, _body_start(body or "")]
    return "\n".join(part for part in parts if part)


def _all_items(session: Session) -> list[ContentItem]:
    return list(session.scalars(select(ContentItem).order_by(ContentItem.id)))


def embed_content_items(session: Session, embedder: Embedder) -> int:
    """Make sure every content item has its embedding in the cache for ``embedder``'s model.

    An item whose text has not changed is never embedded again for the same model. New vectors
    are added to the session; the caller commits.

    Args:
        session: The database session.
        embedder: The embedding model (its library backend embeds the items:
            :func:`nurture.embedding.library_embedder`).

    Returns:
        The number of content items (all of them now have a cached embedding).
    """
    items = _all_items(session)
    embed_texts_cached(session, library_embedder(embedder), [content_text(item) for item in items])
    return len(items)


def load_content_vectors(
    session: Session, embedder: Embedder
) -> tuple[list[ContentItem], np.ndarray]:
    """Every content item with its embedding (embedding, through the cache, any that lack one).

    Args:
        session: The database session.
        embedder: The embedding model (its library backend embeds the items:
            :func:`nurture.embedding.library_embedder`).

    Returns:
        The items ordered by id, and an ``(len(items), embedder.dim)`` float32 matrix of
        unit-length rows in the same order.
    """
    items = _all_items(session)
    vectors = embed_texts_cached(
        session, library_embedder(embedder), [content_text(item) for item in items]
    )
    return items, vectors


LIBRARY_COLUMNS = (
    ContentItem.id,
    ContentItem.key,
    ContentItem.title,
    ContentItem.kind,
    ContentItem.language,
    ContentItem.published_at,
    ContentItem.event_start,
    ContentItem.expires_at,
)
"""The columns :func:`load_library_vectors` gives of each item, in this order."""


def load_library_vectors(
    session: Session, embedder: Embedder
) -> tuple[list[tuple[Any, ...]], np.ndarray]:
    """:func:`load_content_vectors` as plain rows of :data:`LIBRARY_COLUMNS`, not ORM objects.

    The same items and vectors, read in one Core query on the session's connection (no
    object per item; the body is read only to make each item's text).

    Args:
        session: The database session.
        embedder: The embedding model (its library backend embeds the items:
            :func:`nurture.embedding.library_embedder`).

    Returns:
        The items' rows ordered by id, and an ``(len(rows), embedder.dim)`` float32 matrix of
        unit-length rows in the same order.
    """
    rows = (
        plain_connection(session)
        .execute(
            select(
                *LIBRARY_COLUMNS,
                ContentItem.summary,
                ContentItem.tags,
                ContentItem.body,
            ).order_by(ContentItem.id)
        )
        .all()
    )
    width = len(LIBRARY_COLUMNS)
    texts = [_text(row[2], row[width], row[width + 1], row[width + 2]) for row in rows]
    vectors = embed_texts_cached(session, library_embedder(embedder), texts)
    return [tuple(row[:width]) for row in rows], vectors
