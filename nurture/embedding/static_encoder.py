"""A static embedder distilled from the model: one vector per token, a text is their mean.

The distillation follows model2vec (without its dependency): every token of the vocabulary goes
through the model alone (``[CLS] token [SEP]``, mean-pooled), the vectors are reduced by PCA,
then weighted down for frequent tokens (the vocabulary's rank standing in for frequency, Zipf's
law, smooth inverse frequency). Embedding a text is then a table look-up and a mean: about a
hundred times faster than the network, and less accurate; ``nurture evaluate`` measures by how
much. Meant for very large communities.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nurture.embedding.onnx_encoder import load_tokenizer

__all__ = ["STATIC_DIMENSIONS", "StaticEmbedder", "distill_static_vectors"]

STATIC_DIMENSIONS = 256
"""Dimension the token vectors are reduced to (model2vec's default)."""

_SIF_COEFFICIENT = 1e-4
_BATCH = 512


def distill_static_vectors(
    transformer: Any, cls_id: int, sep_id: int, vocabulary_size: int
) -> np.ndarray:
    """One vector per token id of the vocabulary, distilled from ``transformer``.

    Args:
        transformer: The model's Hugging Face transformer (``BertModel``), on the CPU.
        cls_id: Id of the token opening a text.
        sep_id: Id of the token closing a text.
        vocabulary_size: Number of token ids.

    Returns:
        A ``(vocabulary_size, min(STATIC_DIMENSIONS, model dimension))`` float32 array.
    """
    import torch

    rows: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, vocabulary_size, _BATCH):
            ids = torch.arange(start, min(start + _BATCH, vocabulary_size))
            input_ids = torch.stack(
                [torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1
            )
            hidden = transformer(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            rows.append(hidden.mean(dim=1).float().numpy())
    vectors = np.concatenate(rows).astype(np.float64)
    vectors -= vectors.mean(axis=0)
    dimensions = min(STATIC_DIMENSIONS, vectors.shape[1])
    _, _, components = np.linalg.svd(vectors, full_matrices=False)
    reduced = vectors @ components[:dimensions].T
    rank = np.arange(1, vocabulary_size + 1, dtype=np.float64)
    probability = (1.0 / rank) / np.sum(1.0 / rank)
    weight = _SIF_COEFFICIENT / (_SIF_COEFFICIENT + probability)
    return (reduced * weight[:, None]).astype(np.float32)


class StaticEmbedder:
    """Embeds a text as the normalised mean of its tokens' distilled vectors.

    Args:
        name: The embedder's name, the key of its vectors in the embedding cache.
        vectors_file: The ``.npy`` table of :func:`distill_static_vectors`.
        model_path: The model folder (for its ``tokenizer.json``).
        max_seq_length: Tokens kept of each text, as the model truncates.
    """

    def __init__(
        self, name: str, vectors_file: Path, model_path: Path, max_seq_length: int
    ) -> None:
        self.name = name
        self._vectors = np.load(vectors_file, allow_pickle=False)
        self.dim = int(self._vectors.shape[1])
        self._tokenizer = load_tokenizer(model_path, max_seq_length)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as unit-length float32 rows (a text without tokens: zeros)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        lengths = np.array([len(encoding.ids) for encoding in encodings])
        present = np.flatnonzero(lengths)
        if present.size:
            ids = np.concatenate([encodings[index].ids for index in present]).astype(np.int64)
            starts = np.concatenate([[0], np.cumsum(lengths[present])[:-1]])
            sums = np.add.reduceat(self._vectors[ids], starts, axis=0)
            out[present] = sums / lengths[present, None]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return (out / norms).astype(np.float32, copy=False)
