"""Sentence embeddings behind one small interface, with a database cache keyed by text hash.

The embedder's name (model and backend, :func:`embedder_name`) keys the cache.
"""

from nurture.embedding.cache import (
    CachedEmbedding,
    embed_texts_cached,
    start_embedding_cached,
    text_hash,
)
from nurture.embedding.embedders import (
    Embedder,
    HashingEmbedder,
    LazyEmbedder,
    SentenceTransformerEmbedder,
    SplitEmbedder,
    cached_vector_names,
    embedder_name,
    encoder_built,
    library_embedder,
    load_embedder,
)

__all__ = [
    "CachedEmbedding",
    "Embedder",
    "HashingEmbedder",
    "LazyEmbedder",
    "SentenceTransformerEmbedder",
    "SplitEmbedder",
    "cached_vector_names",
    "embed_texts_cached",
    "embedder_name",
    "encoder_built",
    "library_embedder",
    "load_embedder",
    "start_embedding_cached",
    "text_hash",
]
