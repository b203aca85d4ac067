"""The real bundled model on each backend, loaded (and the ONNX encoder exported) once per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.embedding import Embedder, SentenceTransformerEmbedder, load_embedder
from nurture.settings import DEFAULT_EMBEDDING_MODEL

BATCH_SIZE = 64
"""The default batch size: the PyTorch model is the one other tests load (``load_embedder``)."""


@pytest.fixture(scope="session")
def torch_embedder() -> SentenceTransformerEmbedder:
    """The bundled model on PyTorch, shared with every test of the run that loads it."""
    embedder = load_embedder(DEFAULT_EMBEDDING_MODEL, BATCH_SIZE)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    return embedder


@pytest.fixture(scope="session")
def onnx_embedder(torch_embedder: SentenceTransformerEmbedder, models_dir: Path) -> Embedder:
    """The bundled model exported to int8 ONNX from the PyTorch model already loaded: once.

    ``models_dir`` (tests/conftest.py) is the run's ``NURTURE_MODELS_DIR``: a runtime of
    another test on this backend gets this same embedder.
    """
    return load_embedder(DEFAULT_EMBEDDING_MODEL, BATCH_SIZE, "onnx-int8", models_dir)
