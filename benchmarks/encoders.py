"""The embedding backends against the bare PyTorch encode of the same texts.

The texts are the demo community's free-text answers (``generate_demo_community``, the
questionnaire's ``free_text`` questions), each once. The floor is one bare
``SentenceTransformer.encode`` call on them, with nurture's batch size; each backend
(``onnx-int8``, ``static``) embeds the same texts through nurture's embedder, built beforehand
in the models folder (the build is not timed). Each round times the floor, then each backend,
back to back; the report gives medians, texts per second, the ratio to the floor, and how
closely each backend's vectors agree with PyTorch's: cosine of each text's two vectors (for the
static backend, whose vectors have another dimension, none) and the overlap of each text's ten
nearest neighbours among the texts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.measurement import NOISY_SPREAD, Measurement
from nurture.demo import generate_demo_community
from nurture.embedding import Embedder, load_embedder
from nurture.settings import Settings
from nurture.workspace import load_questionnaire

__all__ = [
    "BackendAgreement",
    "EncoderBenchmarkResult",
    "demo_free_texts",
    "neighbour_overlap",
    "render_encoders_section",
    "run_encoder_benchmark",
]

BACKENDS = ("onnx-int8", "static")
"""The backends measured against the PyTorch floor."""

NEIGHBOURS = 10


@dataclass(frozen=True)
class BackendAgreement:
    """How one backend's vectors compare with PyTorch's on the benchmark's texts.

    Attributes:
        cosine_mean: Mean cosine between a text's two vectors (None: other dimension).
        cosine_min: The lowest such cosine (None: other dimension).
        neighbour_overlap: Mean share of a text's ten nearest texts both agree on.
    """

    cosine_mean: float | None
    cosine_min: float | None
    neighbour_overlap: float


@dataclass(frozen=True)
class EncoderBenchmarkResult:
    """What the encoder benchmark measured.

    Attributes:
        members: Demo members whose answers gave the texts.
        seed: Seed of the demo community.
        repeats: Rounds measured.
        model: The embedding model setting.
        batch_size: Texts per forward pass, on every side.
        texts: Unique texts embedded.
        characters_mean: Mean characters per text.
        floor: The bare PyTorch encode's timings.
        backends: Each backend's timings, by backend name.
        agreement: Each backend's agreement with PyTorch, by backend name.
        build_seconds: Time spent building or loading each backend (not timed).
        measured: When, and under which load, the figure was measured.
    """

    members: int
    seed: int
    repeats: int
    model: str
    batch_size: int
    texts: int
    characters_mean: float
    floor: Measurement
    backends: dict[str, Measurement]
    agreement: dict[str, BackendAgreement]
    build_seconds: dict[str, float]
    measured: str = ""


def demo_free_texts(settings: Settings, n_members: int, seed: int, now: dt.datetime) -> list[str]:
    """The unique free-text answers of the demo community, in the order first given."""
    questionnaire = load_questionnaire(settings.questionnaire_path)
    free = {question.key for question in questionnaire.questions if question.kind == "free_text"}
    with tempfile.TemporaryDirectory(prefix="nurture-bench-encoders-") as folder:
        files = generate_demo_community(Path(folder), n_members, seed, now=now)
        texts: dict[str, None] = {}
        with files.answers.open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                if record["question"] in free and isinstance(record["value"], str):
                    texts.setdefault(record["value"], None)
    return list(texts)


def neighbour_overlap(expected: np.ndarray, vectors: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Mean share of each row's ``k`` nearest rows (by dot product) both arrays agree on."""

    def nearest(rows: np.ndarray) -> np.ndarray:
        similarity = rows @ rows.T
        np.fill_diagonal(similarity, -np.inf)
        return np.argpartition(-similarity, k, axis=1)[:, :k]

    ours, theirs = nearest(vectors), nearest(expected)
    shared = [len(set(a) & set(b)) / k for a, b in zip(ours, theirs, strict=True)]
    return float(np.mean(shared))


def _agreement(expected: np.ndarray, vectors: np.ndarray) -> BackendAgreement:
    cosine_mean = cosine_min = None
    if vectors.shape == expected.shape:
        cosines = np.sum(vectors * expected, axis=1)
        cosine_mean, cosine_min = float(cosines.mean()), float(cosines.min())
    return BackendAgreement(cosine_mean, cosine_min, neighbour_overlap(expected, vectors))


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def _timed(action: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    vectors = action()
    return time.perf_counter() - start, vectors


def run_encoder_benchmark(
    settings: Settings,
    n_members: int,
    seed: int,
    repeats: int,
    now: dt.datetime,
    backends: Sequence[str] = BACKENDS,
) -> EncoderBenchmarkResult:
    """Time each backend against the bare PyTorch encode of the demo's free texts.

    Args:
        settings: Model, batch size and models folder (where the backends are built once).
        n_members: Demo members whose answers give the texts.
        seed: Seed of the demo community.
        repeats: Rounds; the report gives medians.
        now: The current time of the demo community.
        backends: The backends to measure.

    Returns:
        The measurements.

    Raises:
        ValueError: ``repeats`` is below 1.
    """
    from benchmarks.run import WARM_UP_TEXTS, encode_bare, load_bare_model

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, found {repeats}")
    load_at_start = _load_average()
    texts = demo_free_texts(settings, n_members, seed, now)
    batch_size = settings.embedding_batch_size
    bare = load_bare_model(settings.embedding_model)
    encode_bare(bare, WARM_UP_TEXTS, batch_size)
    embedders: dict[str, Embedder] = {}
    build_seconds: dict[str, float] = {}
    for backend in backends:
        start = time.perf_counter()
        embedders[backend] = load_embedder(
            settings.embedding_model,
            batch_size,
            backend,
            settings.resolved_models_dir.resolve(),
        )
        embedders[backend].embed(WARM_UP_TEXTS)
        build_seconds[backend] = time.perf_counter() - start
    # One untimed round: the first large encode in a process is slower, whichever model.
    expected = encode_bare(bare, texts, batch_size)
    for embedder in embedders.values():
        embedder.embed(texts)
    floor: list[float] = []
    samples: dict[str, list[float]] = {backend: [] for backend in backends}
    agreement: dict[str, BackendAgreement] = {}
    for _ in range(repeats):
        seconds, _vectors = _timed(lambda: encode_bare(bare, texts, batch_size))
        floor.append(seconds)
        for backend, embedder in embedders.items():
            seconds, vectors = _timed(lambda embedder=embedder: embedder.embed(texts))
            samples[backend].append(seconds)
            agreement[backend] = _agreement(expected, vectors)
    return EncoderBenchmarkResult(
        members=n_members,
        seed=seed,
        repeats=repeats,
        model=settings.embedding_model,
        batch_size=batch_size,
        texts=len(texts),
        characters_mean=float(np.mean([len(text) for text in texts])) if texts else 0.0,
        floor=Measurement("Bare `SentenceTransformer.encode`, PyTorch (floor)", tuple(floor)),
        backends={
            backend: Measurement(f"nurture's `{backend}` embedder", tuple(values))
            for backend, values in samples.items()
        },
        agreement=agreement,
        build_seconds=build_seconds,
        measured=f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, load average (1 min) "
        f"{load_at_start} at the start, {_load_average()} at the end",
    )


def _rounds(measurement: Measurement) -> str:
    return ", ".join(f"{sample:.2f}" for sample in measurement.samples)


def render_encoders_section(result: EncoderBenchmarkResult) -> list[str]:
    """The Markdown section of the encoder figure."""
    floor = result.floor
    rows = [
        "| Encoder | Median (s) | Texts/s | Ratio to floor | Speed-up | Each round (s) "
        "| Cosine with PyTorch (mean / min) | Top-10 neighbours shared |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| {floor.label} | {floor.median:.3f} | {result.texts / floor.median:.0f} | 1.00 "
        f"| 1.0x | {_rounds(floor)} | — | — |",
    ]
    for backend, measurement in result.backends.items():
        agreement = result.agreement[backend]
        cosine = (
            f"{agreement.cosine_mean:.4f} / {agreement.cosine_min:.4f}"
            if agreement.cosine_mean is not None and agreement.cosine_min is not None
            else "— (other dimension)"
        )
        rows.append(
            f"| {measurement.label} | {measurement.median:.3f} "
            f"| {result.texts / measurement.median:.0f} | {measurement.ratio_to(floor):.2f} "
            f"| {floor.median / measurement.median:.1f}x | {_rounds(measurement)} | {cosine} "
            f"| {agreement.neighbour_overlap:.2f} |"
        )
    noisy = [m.label for m in (floor, *result.backends.values()) if m.is_noisy]
    warning = (
        [
            f"> **Noisy run.** The rounds of {'; '.join(noisy)} disagree by more than "
            f"{NOISY_SPREAD:.2f} times: something else was using the CPUs. Re-run on a quiet "
            "machine before trusting these ratios.",
            "",
        ]
        if noisy
        else []
    )
    builds = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.build_seconds.items())
    return [
        "## The embedding backends against a bare PyTorch encode",
        "",
        "### What is measured",
        "",
        f"The {result.texts} unique free-text answers of the demo community "
        f"(`generate_demo_community`, {result.members} members, seed {result.seed}; "
        f"{result.characters_mean:.0f} characters on average), embedded by each backend of "
        f"`NURTURE_EMBEDDING_BACKEND` (see docs/embeddings.md) against the floor: one bare "
        f"`SentenceTransformer.encode` of the same texts on PyTorch, batch size "
        f"{result.batch_size}, as nurture's `torch` backend does. Each figure is the median "
        f"of {result.repeats} rounds, after one untimed round; a round runs the floor, then "
        "each backend, back to back. The ratio is the backend's time divided by the floor's. "
        "Agreement: the cosine between a text's vector from the backend and from PyTorch, and "
        "the share of each text's 10 nearest texts both find.",
        "",
        "### Results",
        "",
        *warning,
        *rows,
        "",
        f"- Embedding model: `{result.model}`.",
        *([f"- Measured {result.measured}."] if result.measured else []),
        f"- Not timed: building (once, cached in the models folder) or loading each backend "
        f"and warming it: {builds}.",
        "- Ranking quality with each backend (`nurture evaluate`): docs/embeddings.md.",
        "",
    ]
