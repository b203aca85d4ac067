"""The content library on its own embedding backend: members' texts on one, items on another."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.embedding import (
    Embedder,
    HashingEmbedder,
    LazyEmbedder,
    SentenceTransformerEmbedder,
    SplitEmbedder,
    cached_vector_names,
    embed_texts_cached,
    embedder_name,
    library_embedder,
    load_embedder,
)
from nurture.errors import EmbeddingError
from nurture.recommend import load_content_vectors
from nurture.recommend.content_vectors import (
    content_text,
    embed_content_items,
    load_library_vectors,
)
from nurture.runtime import Runtime
from nurture.settings import DEFAULT_EMBEDDING_MODEL, Settings
from nurture.storage import ContentItem, EmbeddingCacheEntry

pytestmark = pytest.mark.model  # every test here may load the real model

MODEL = DEFAULT_EMBEDDING_MODEL
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


class NamedHashing(HashingEmbedder):
    """The test embedder under another name, with a sign: two "backends" of one model."""

    def __init__(self, name: str, sign: float = 1.0) -> None:
        super().__init__(16)
        self.name, self.sign, self.calls = name, sign, 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return self.sign * super().embed(texts)


def _items(session: Session, count: int = 3) -> list[ContentItem]:
    items = [
        ContentItem(
            key=f"item-{n}",
            title=f"Guide number {n}",
            url=f"https://example.org/{n}",
            kind="article",
            language="en",
            tags=["guides"],
            summary=f"How to run event {n}.",
            body="Step by step.",
            published_at=NOW,
            text_hash=f"item-{n}",
            source_path=f"library/item-{n}.md",
        )
        for n in range(count)
    ]
    session.add_all(items)
    session.flush()
    return items


def _split(loads: list[NamedHashing]) -> SplitEmbedder:
    def load() -> Embedder:
        loads.append(NamedHashing("model", sign=-1.0))
        return loads[-1]

    return SplitEmbedder(
        "model+fast+library-exact", NamedHashing("model+fast"), LazyEmbedder("model", 16, load)
    )


def test_items_are_embedded_by_the_library_backend_and_texts_by_the_members(
    session: Session,
) -> None:
    loads: list[NamedHashing] = []
    split = _split(loads)
    items = _items(session)

    assert embed_content_items(session, split) == 3
    member_vectors = embed_texts_cached(session, split, ["I run meetups."])
    session.commit()

    cached = set(session.scalars(select(EmbeddingCacheEntry.model).distinct()))
    assert cached == {"model", "model+fast+library-exact"}
    _, vectors = load_content_vectors(session, split)
    expected = -HashingEmbedder(16).embed([content_text(item) for item in items])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    _, library_vectors = load_library_vectors(session, split)  # the match run's own read
    np.testing.assert_allclose(library_vectors, expected, atol=1e-6)
    np.testing.assert_allclose(member_vectors, HashingEmbedder(16).embed(["I run meetups."]))
    assert len(loads) == 1


def test_the_library_backend_loads_only_when_an_item_is_not_cached(session: Session) -> None:
    first: list[NamedHashing] = []
    _items(session)
    embed_content_items(session, _split(first))
    session.commit()

    again: list[NamedHashing] = []
    later = _split(again)
    load_content_vectors(session, later)
    assert again == []  # every item cached: the library's network never loaded

    session.add(
        ContentItem(
            key="new",
            title="A new webinar",
            url="https://example.org/new",
            kind="webinar",
            language="en",
            tags=[],
            summary="",
            body="",
            published_at=NOW,
            text_hash="new",
            source_path="library/new.md",
        )
    )
    session.flush()
    load_content_vectors(session, later)
    assert len(again) == 1 and again[0].calls == 1  # loaded once, for the one new item


def test_a_lazy_embedder_refuses_a_model_that_is_not_the_one_announced() -> None:
    lazy = LazyEmbedder("model", 32, lambda: NamedHashing("model"))
    with pytest.raises(EmbeddingError, match=r"expected the embedder 'model' \(32 dimensions\)"):
        lazy.embed(["text"])
    with pytest.raises(EmbeddingError, match="must be one model"):
        SplitEmbedder("x", NamedHashing("a"), LazyEmbedder("b", 32, lambda: NamedHashing("b")))


def test_names_tell_the_library_backend_apart() -> None:
    assert embedder_name(MODEL, "onnx-int8", "torch") == f"{MODEL}+onnx-int8+library-torch"
    assert embedder_name(MODEL, "onnx-int8", "onnx-int8") == f"{MODEL}+onnx-int8"
    assert embedder_name(MODEL, "torch", "static") == f"{MODEL}+library-static"
    assert embedder_name("hashing-64", "onnx-int8", "torch") == "hashing-64"
    assert cached_vector_names(MODEL, "onnx-int8", "torch") == (
        f"{MODEL}+onnx-int8+library-torch",
        MODEL,
    )
    assert cached_vector_names(MODEL, "torch", "torch") == (MODEL,)
    assert cached_vector_names("hashing-64", "onnx-int8", "torch") == ("hashing-64",)
    assert load_embedder("hashing-64", 8, "onnx-int8", library_backend="torch").name == "hashing-64"
    plain = HashingEmbedder(8)
    assert library_embedder(plain) is plain


def test_an_unknown_library_backend_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EmbeddingError) as raised:
        load_embedder(MODEL, 64, "torch", library_backend="tensorrt")
    assert str(raised.value) == (
        "unknown embedding backend 'tensorrt': expected one of torch, onnx-int8, static "
        "(NURTURE_LIBRARY_EMBEDDING_BACKEND)"
    )
    monkeypatch.setenv("NURTURE_LIBRARY_EMBEDDING_BACKEND", "onnx")
    with pytest.raises(ValidationError, match="library_embedding_backend"):
        Settings()


def test_the_runtime_embeds_items_on_pytorch_and_texts_on_int8(
    torch_embedder: SentenceTransformerEmbedder,
    onnx_embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NURTURE_EMBEDDING_BACKEND", "onnx-int8")
    embedder = Runtime(Settings(data_dir=tmp_path / "data")).embedder

    assert isinstance(embedder, SplitEmbedder)
    assert embedder.name == f"{MODEL}+onnx-int8+library-torch"
    assert embedder.members is onnx_embedder
    texts = ["Webinars about onboarding newcomers.", "Find venues for meetups."]
    np.testing.assert_array_equal(embedder.embed(texts), onnx_embedder.embed(texts))
    # The library's vectors are PyTorch's own, from the one PyTorch model of the process.
    np.testing.assert_array_equal(
        library_embedder(embedder).embed(texts), torch_embedder.embed(texts)
    )
    assert library_embedder(embedder).name == MODEL
    assert load_embedder(MODEL, 64, "torch", tmp_path / "elsewhere") is torch_embedder

    monkeypatch.setenv("NURTURE_LIBRARY_EMBEDDING_BACKEND", "onnx-int8")
    assert Runtime(Settings(data_dir=tmp_path / "data")).embedder is onnx_embedder
