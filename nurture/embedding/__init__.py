"""Sentence embeddings behind one small interface, with a database cache keyed by text hash."""

from nurture.embedding.cache import embed_texts_cached, text_hash
from nurture.embedding.embedders import (
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    load_embedder,
)

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "embed_texts_cached",
    "load_embedder",
    "text_hash",
]
