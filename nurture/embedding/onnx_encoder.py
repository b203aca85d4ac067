"""The embedding model as an int8 ONNX network run by onnxruntime: same vectors, faster.

Why not sentence-transformers' own ONNX backend: its ``onnx`` extra needs optimum-onnx, which
requires transformers 4, while the sentence-transformers release nurture uses needs
transformers 5 (pip then falls back to an old sentence-transformers). So the model's
transformer is exported here with ``torch.onnx.export``, mean pooling and normalisation
included, and its matrix products by weights quantised to int8 with onnxruntime's dynamic
quantisation (per channel; the feed-forward outputs stay float32), which keeps the vectors
within about 0.5 % of the PyTorch model's. Texts are tokenised with the model's own
``tokenizer.json`` (the ``tokenizers`` library), truncated as the model is, and batched by length
so little time goes into padding. Batches run side by side, one thread each (one per core by
default): a batch's operators are small, and splitting each of them across threads cost more in
waiting than it gave (docs/embeddings.md).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nurture.errors import EmbeddingError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "MAX_BATCH_SIZE",
    "OnnxEmbedder",
    "export_int8_onnx",
    "length_sorted_batches",
    "load_tokenizer",
]

MAX_BATCH_SIZE = 16
"""Texts per forward pass of the int8 encoder at most (``NURTURE_EMBEDDING_BATCH_SIZE`` above it
is PyTorch's). With one thread per batch, small batches pad less and keep both cores busy on a
chunk's few hundred texts: the demo's free texts in chunks of 228, as the profile stage sends
them, took 4.0-4.1 s in batches of 16 against 6.1-6.3 s in batches of 64 (docs/embeddings.md)."""

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_OPSET = 17


def load_tokenizer(model_path: Path, max_length: int) -> Tokenizer:
    """The model's fast tokenizer (``tokenizer.json``), truncating to ``max_length`` tokens.

    Raises:
        EmbeddingError: The model folder has no readable ``tokenizer.json``.
    """
    from tokenizers import Tokenizer

    path = model_path / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:
        raise EmbeddingError(
            f"cannot read the tokenizer {str(path)!r} of the embedding model ({error}): the "
            "onnx-int8 and static backends need the model folder's tokenizer.json"
        ) from error
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices of the texts in batches of ``batch_size``, longest first, by token count.

    Texts of one batch are padded to its longest: batching texts of similar length pads less.
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _mean_pooled(transformer: Any) -> Any:
    """A module running ``transformer``, then mean pooling over the mask, then L2 normalisation."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return MeanPooled().eval()


def _feed_forward_outputs(onnx_file: Path, intermediate_size: int) -> list[str]:
    """Names of the layers' feed-forward outputs: matrix products by ``intermediate_size`` rows."""
    import onnx

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    rows = {weight.name: weight.dims[0] for weight in graph.initializer if len(weight.dims) == 2}
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and any(rows.get(name) == intermediate_size for name in node.input)
    ]


def export_int8_onnx(transformer: Any, destination: Path) -> None:
    """Export a BERT-like transformer with mean pooling to ONNX, quantised to int8.

    The export traces a padded batch, so the attention mask stays in the graph, with the
    eager attention (the traced graph of fused attention can drop the mask).

    Args:
        transformer: The model's Hugging Face transformer (``BertModel``), on the CPU.
        destination: The ``.onnx`` file to write.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    previous = transformer.config._attn_implementation
    transformer.set_attn_implementation("eager")
    encoder = _mean_pooled(transformer)
    # Two texts of 5 and 3 tokens: the second padded, so masking is traced.
    input_ids = torch.tensor([[101, 7592, 2088, 999, 102], [101, 7592, 102, 0, 0]])
    attention_mask = (input_ids != 0).long()
    example = (input_ids, attention_mask, torch.zeros_like(input_ids))
    axes = {name: {0: "batch", 1: "tokens"} for name in _INPUTS}
    try:
        with tempfile.TemporaryDirectory(prefix="nurture-onnx-") as folder:
            float_model = Path(folder) / "float32.onnx"
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about Python-side branches
                torch.onnx.export(
                    encoder,
                    example,
                    str(float_model),
                    input_names=list(_INPUTS),
                    output_names=["sentence_embedding"],
                    dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
                    opset_version=_OPSET,
                    dynamo=False,
                )
            # Only the matrix products by weights, per output channel: the embedding tables
            # and the attention's own products stay float32 (agreement drops without it), and
            # so do the feed-forward outputs, whose GELU activations are too spread for int8.
            # The quantiser logs each tensor on the root logger: silenced meanwhile.
            float_kept = _feed_forward_outputs(float_model, transformer.config.intermediate_size)
            disabled = logging.root.manager.disable
            logging.disable(logging.WARNING)
            try:
                quantize_dynamic(
                    float_model,
                    destination,
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    reduce_range=False,
                    op_types_to_quantize=["MatMul"],
                    nodes_to_exclude=float_kept,
                )
            finally:
                logging.disable(disabled)
    finally:
        transformer.set_attn_implementation(previous)


class OnnxEmbedder:
    """Embeds with an exported ONNX encoder (:func:`export_int8_onnx`) and the model's tokenizer.

    Args:
        name: The embedder's name, the key of its vectors in the embedding cache.
        onnx_file: The exported encoder.
        model_path: The model folder (for its ``tokenizer.json``).
        dim: Dimension of the vectors.
        max_seq_length: Tokens kept of each text, as the model truncates.
        batch_size: Texts per forward pass (at most :data:`MAX_BATCH_SIZE`).
        workers: Batches run at once, each on one thread; default: the cores this process
            may use. The vectors do not depend on it.

    Raises:
        EmbeddingError: The encoder or the tokenizer cannot be loaded.
    """

    def __init__(
        self,
        name: str,
        onnx_file: Path,
        model_path: Path,
        dim: int,
        max_seq_length: int,
        batch_size: int = MAX_BATCH_SIZE,
        workers: int | None = None,
    ) -> None:
        import onnxruntime

        self.name = name
        self.dim = dim
        self.batch_size = max(1, min(batch_size, MAX_BATCH_SIZE))
        self.max_seq_length = max_seq_length
        self.workers = max(1, workers or len(os.sched_getaffinity(0)))
        self._tokenizer = load_tokenizer(model_path, max_seq_length)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # One thread per batch, batches side by side (``embed``): each operator of a batch is
        # too small to share across threads, which would wait for each other at every one.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(onnx_file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise EmbeddingError(
                f"cannot load the ONNX encoder {str(onnx_file)!r} ({error}); delete it to have "
                "it built again"
            ) from error

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as unit-length float32 rows."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = [len(encoding.ids) for encoding in encodings]

        def run(batch: np.ndarray) -> None:
            width = max(lengths[index] for index in batch)
            input_ids = np.zeros((len(batch), width), dtype=np.int64)
            attention_mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                ids = encodings[index].ids
                input_ids[row, : len(ids)] = ids
                attention_mask[row, : len(ids)] = 1
            feeds = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": np.zeros_like(input_ids),
            }
            out[batch] = self._session.run(None, feeds)[0]  # releases the GIL while it runs

        batches = length_sorted_batches(lengths, self.batch_size)
        if self.workers == 1 or len(batches) == 1:
            for batch in batches:
                run(batch)
        else:
            with ThreadPoolExecutor(min(self.workers, len(batches))) as pool:
                for _ in pool.map(run, batches):  # re-raises a batch's error
                    pass
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms
