"""The whole pipeline on a large generated community, stage by stage, against bare floors.

Run it with ``make bench-scale`` (``MEMBERS=100000`` by default; ``MEMBERS=1000000`` possible)
or ``python -m benchmarks.scale --members 10000``. It builds a workspace (a copy of ``content/``
whose library is grown to ``--items`` items by cloning its Markdown files), generates a community
of ``--members`` members with the demo generator (:func:`nurture.demo.generate_demo_community`),
and runs the stages as the nightly and deliver runs call them (:mod:`nurture.stages`): imports of
members, answers and activity, content sync, profile, segment, match, best hours, one journeys
pass and delivery through the SendGrid backend to a local mock of Mail Send answering after 20 ms
(:mod:`benchmarks.mock_sendgrid`), then of the same messages again to the outbox
(``--deliver-at-most`` delivers only the first so many due emails, for a very large run, and the
report says so). Then, to measure the incremental nightly, it imports new activity for 1% of the
members and runs profile, segment, match and best hours again (warm). One run measures SQLite,
then PostgreSQL (a database of its own, created on the server of ``--postgres-url`` and dropped
after; skipped, and said so in the report, when the server cannot be reached), on the same
community.

Each stage reports its wall-clock time, the rows it handled per second, and its peak memory (the
process's resident set size, sampled every 20 ms while it runs), each next to a floor measured in
the same run on the same rows (a floor hands the memory it freed back to the system when it is
done, so the next stage does not start with it: a nightly run has no floors):

- imports, and the rows each later stage writes: the bare insert of the same rows into an empty
  copy of the table with its primary key, unique keys and indexes (not its foreign keys, which
  the stage's rows do check), with the driver alone (``executemany`` on SQLite, ``COPY`` on
  PostgreSQL), in batches of ``chunk_size`` with a commit after each;
- profile and content: the bare PyTorch encode (``SentenceTransformer.encode``, as
  :mod:`benchmarks.encoders`) of the very texts the stage sent to the embedder, plus the bare
  insert of the rows written (with the stand-in embedder: its bare ``embed``);
- match: the bare product of the members' interest vectors with the items' vectors and an
  ``argpartition`` top-k, in chunks, plus the bare insert of the recommendation rows;
- delivery through SendGrid: the sequential loop of the ``sendgrid`` client's ``send()`` on the
  same request bodies, built before timing (on at most ``--floor-emails`` of them, its time
  scaled to every email sent); the mock checks every message arrived exactly once;
- delivery to the outbox: the bare writing of the same outbox files, one by one.

The warm nightly runs a day later (``NOW`` + 1 day), as the next night would.

``--embedder`` chooses the bundled model on a backend, ``onnx-int8`` (the default: the backend
for a large community's first nightly, docs/embeddings.md) or ``torch``, or ``stand-in``
(``hashing-384``, feature hashing, no neural network) for a quick run. With the model, the report
ends with the encoder check of :mod:`benchmarks.encoders`: the chosen backend against the bare
PyTorch encode of the demo's free texts, with the cosine of their vectors.

Each stage logs a line when it starts and ends, and every ``PROGRESS_SECONDS`` while it runs
through its chunks, so a long run shows it is alive.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import functools
import gc
import io
import logging
import multiprocessing
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import numpy as np
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import SQLAlchemyError

from benchmarks import sendgrid_delivery
from benchmarks.encoders import (
    EncoderBenchmarkResult,
    render_encoders_section,
    run_encoder_benchmark,
)
from benchmarks.run import WARM_UP_TEXTS, encode_bare, load_bare_model
from nurture import stages
from nurture.chunks import chunked, map_at_once
from nurture.delivery import DeliverySummary
from nurture.demo import DemoFiles, generate_library_community
from nurture.embedding import Embedder, library_embedder
from nurture.recommend import load_content_vectors
from nurture.recommend.run_state import forget_run_states
from nurture.runtime import Runtime, settings_from
from nurture.settings import DEFAULT_EMBEDDING_MODEL, Settings
from nurture.storage import Member, MemberProfile, create_database_engine, open_session
from nurture.storage.database_errors import database_error
from nurture.workspace import ContentItemSpec, load_content_library, load_questionnaire

__all__ = [
    "EMBEDDERS",
    "Community",
    "MemoryProbe",
    "Progress",
    "ScaleReport",
    "ScaleResult",
    "StageFigure",
    "build_workspace",
    "main",
    "prepare_community",
    "render_scale_report",
    "render_scale_section",
    "run_scale_benchmark",
]

logger = logging.getLogger("benchmarks")

REPO = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
"""The fixed current time of the community and of every stage."""
STAND_IN_MODEL = "hashing-384"
"""The stand-in embedder: feature hashing of the model's dimension (384), no neural model."""
EmbedderChoice = Literal["stand-in", "torch", "onnx-int8"]
EMBEDDERS: tuple[EmbedderChoice, ...] = ("onnx-int8", "torch", "stand-in")
"""``--embedder``: the bundled model on a backend, or the stand-in; the first is the default."""
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
"""The server where the PostgreSQL run creates its database (``--postgres-url``)."""
PROGRESS_SECONDS = 15.0
"""At most one progress line per stage this often."""
CHANGED_SHARE = 0.01
"""Share of the members given new activity before the warm nightly."""
P = ParamSpec("P")
R = TypeVar("R")
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


@contextmanager
def stage_measured(name: str) -> Iterator[Timed]:
    """Time a stage as :func:`measured`, logging a line when it starts and when it ends."""
    logger.info("%s: started", name)
    with measured() as timed:
        yield timed
    logger.info(
        "%s: %.1f s, peak RSS %s MB (%s MB at its start)",
        name,
        timed.seconds,
        _mb(timed.peak_bytes),
        _mb(timed.start_bytes),
    )


class Progress:
    """Logs how far a stage is through its chunks, at most every ``interval`` seconds."""

    def __init__(
        self, name: str, total: int, unit: str, interval: float = PROGRESS_SECONDS
    ) -> None:
        self.name, self.total, self.unit, self.interval = name, total, unit, interval
        self.done = 0
        self._started = self._logged = time.perf_counter()

    def advance(self, count: int) -> None:
        """Count ``count`` more done; log a line when ``interval`` has passed since the last."""
        self.done += count
        now = time.perf_counter()
        if now - self._logged >= self.interval:
            self._logged = now
            share = self.done / self.total if self.total else 1.0
            logger.info(
                "%s: %s/%s %s (%.0f%%), %.0f s",
                self.name,
                f"{self.done:,}",
                f"{self.total:,}",
                self.unit,
                100 * share,
                now - self._started,
            )


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
    """Everything one scale run (one database) measured."""

    members: int
    items: int
    database: str
    embedding_model: str
    chunk_size: int
    embedder: EmbedderChoice = "stand-in"
    figures: list[StageFigure] = field(default_factory=list)
    warm: list[StageFigure] = field(default_factory=list)
    changed_members: int = 0
    setup_seconds: float = 0.0
    wall_seconds: float = 0.0
    send_concurrency: int = 0
    delivery_processes: int = 1
    chunk_threads: int = 1
    due_emails: int = 0
    delivered_cap: int | None = None
    until: str | None = None
    machine: dict[str, str] = field(default_factory=dict)

    def figure(self, name: str) -> StageFigure | None:
        """The cold run's figure of stage ``name``, if it ran."""
        return next((f for f in self.figures if f.name == name), None)

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
    and its URL with ``-c<n>``; its dates, kind and language are the original's. Its body and
    tags mix the original's with those of two other items in its language (chosen by ``n``,
    a different pair for each clone), so that clones are related items, not copies: a library
    of copies would leave a member a handful of distinct items once near-duplicates are left
    out, and the match stage would write and explain far fewer recommendations than it does
    for a real library.
    """
    shutil.copytree(REPO / "content", target)
    library = target / "library"
    originals = sorted(library.glob("*.md"))
    parsed = [_split_item(path.read_text(encoding="utf-8")) for path in originals]
    by_language: dict[str, list[int]] = {}
    for index, (header, _) in enumerate(parsed):
        language = re.search(r"^language: (\S+)$", header, flags=re.M)
        by_language.setdefault(language.group(1) if language else "", []).append(index)
    copy = 0
    while len(originals) * (copy + 1) < items:
        copy += 1
        for index, source in enumerate(originals):
            if len(originals) * copy + index >= items:
                break
            header, body = parsed[index]
            header = re.sub(
                r'^title: "?(.*?)"?$', rf'title: "\1 #{copy}"', header, count=1, flags=re.M
            )
            header = re.sub(r"^url: (\S+)$", rf"url: \1-c{copy}", header, count=1, flags=re.M)
            peers = by_language[_language_of(header)]
            position = peers.index(index)
            first = parsed[peers[(position + copy) % len(peers)]]
            second = parsed[peers[(position + 2 * copy + 1) % len(peers)]]
            header = _with_tags(header, [header, first[0], second[0]])
            text = header + _mixed_body([body, first[1], second[1]])
            (library / f"{source.stem}-c{copy}.md").write_text(text, encoding="utf-8")
    return target


def _split_item(text: str) -> tuple[str, str]:
    """A Markdown item's front matter (with its closing ``---`` line) and its body."""
    end = text.index("\n---", 3) + len("\n---\n")
    return text[:end], text[end:]


def _language_of(header: str) -> str:
    found = re.search(r"^language: (\S+)$", header, flags=re.M)
    return found.group(1) if found else ""


def _with_tags(header: str, headers: Sequence[str]) -> str:
    """``header`` with the tags of ``headers`` (its own first), each once."""
    tags: dict[str, None] = {}
    for one in headers:
        found = re.search(r"^tags: \[(.*)\]$", one, flags=re.M)
        if found:
            tags.update(dict.fromkeys(tag.strip() for tag in found.group(1).split(",")))
    listed = ", ".join(tag for tag in tags if tag)
    return re.sub(r"^tags: \[.*\]$", f"tags: [{listed}]", header, count=1, flags=re.M)


def _mixed_body(bodies: Sequence[str]) -> str:
    """The paragraphs of the first body, with every other one taken from the next bodies."""
    own = [part for part in bodies[0].split("\n\n") if part.strip()]
    others = [part for body in bodies[1:] for part in body.split("\n\n")[1::2] if part.strip()]
    mixed = [part for pair in zip(own[::2], others, strict=False) for part in pair]
    return "\n\n".join(mixed or own).rstrip("\n") + "\n"


@dataclass(frozen=True)
class Community:
    """A generated community and the workspace it was generated for, shared by the runs.

    Attributes:
        workspace: The workspace folder (its library grown to the items asked).
        specs: The library's items.
        files: The community's import files.
        seconds: Building the workspace and generating the community.
    """

    workspace: Path
    specs: list[ContentItemSpec]
    files: DemoFiles
    seconds: float


def prepare_community(directory: Path, *, members: int, items: int, seed: int = 7) -> Community:
    """Build the workspace (``items`` items) and generate ``members`` members in ``directory``."""
    started = time.perf_counter()
    logger.info("preparing %s members and %s items", f"{members:,}", f"{items:,}")
    workspace = build_workspace(directory / "workspace", items)
    specs = load_content_library(workspace / "library")
    files = generate_library_community(
        directory / "community",
        members,
        seed,
        now=NOW,
        library=specs,
        questionnaire=load_questionnaire(workspace / "questionnaire.yaml"),
    )
    return Community(workspace, specs, files, time.perf_counter() - started)


class RecordingEmbedder:
    """Passes calls through to ``inner``, recording the texts embedded since the last reset."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.texts: list[str] = []
        self.progress: Progress | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` with the inner embedder, recording them (and counting ``progress``)."""
        return self._recorded(self.inner, texts)

    @property
    def library(self) -> Embedder:
        """The inner embedder's library embedder, recording through this one too."""
        library = library_embedder(self.inner)
        return self if library is self.inner else _RecordedLibrary(self, library)

    def _recorded(self, embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        vectors = embedder.embed(texts)
        if self.progress is not None:
            self.progress.advance(len(texts))
        return vectors


class _RecordedLibrary:
    """The library side of a :class:`RecordingEmbedder` (its texts recorded with the others)."""

    def __init__(self, recorder: RecordingEmbedder, library: Embedder) -> None:
        self.recorder = recorder
        self.inner = library
        self.name = library.name
        self.dim = library.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` with the library embedder, recorded by the recorder."""
        return self.recorder._recorded(self.inner, texts)


# --- floors ---------------------------------------------------------------------------------


def return_freed_memory() -> None:
    """Hand the heap a finished block freed back to the system (glibc's ``malloc_trim``).

    A floor reads every row it writes (a million profiles are gigabytes of Python objects)
    before timing; once it is done, the allocator keeps those freed pages, and the next stage's
    resident set would start with them. A nightly run has no floors, so each floor returns them.
    Elsewhere than glibc, nothing is done.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


def _floor(function: Callable[P, R]) -> Callable[P, R]:
    """A floor that returns the memory it freed when it is done (:func:`return_freed_memory`)."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            gc.collect()
            return_freed_memory()

    return wrapper


def _indexed_copy_sqlite(cursor: Any, table: str, copy: str) -> None:
    """Create ``copy``: ``table``'s definition (keys, unique constraints, indexes) renamed."""
    (definition,) = cursor.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    head = re.compile(rf'^CREATE TABLE\s+"?{re.escape(table)}"?', re.IGNORECASE)
    cursor.execute(head.sub(f"CREATE TABLE {copy}", definition, count=1))
    indexes = cursor.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL",
        (table,),
    ).fetchall()
    for name, statement in indexes:
        index_head = re.compile(
            rf'^CREATE (UNIQUE )?INDEX\s+"?{re.escape(name)}"?\s+ON\s+"?{re.escape(table)}"?',
            re.IGNORECASE,
        )
        cursor.execute(
            index_head.sub(rf"CREATE \1INDEX floor_{name} ON {copy}", statement, count=1)
        )


@_floor
def bare_insert(engine: Engine, tables: Sequence[str], batch: int, where: str = "") -> Timed:
    """Time the bare insert of the rows of ``tables`` into empty copies of them.

    A copy has its table's primary key, unique constraints and indexes (what storing a row in
    that table costs at the least, as ``make bench``'s and ``make bench-imports``' floors, which
    write into the table itself), not its foreign keys. The rows are read first (not timed);
    then written with the driver alone, in batches of ``batch`` rows with a commit after each
    (``executemany`` on SQLite, ``COPY`` on PostgreSQL). The copies are dropped after.
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
                cursor.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")
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
                cursor.execute("PRAGMA foreign_keys=OFF")
                cursor.execute(f"DROP TABLE IF EXISTS {copy}")
                _indexed_copy_sqlite(cursor, table, copy)
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
            if engine.dialect.name != "postgresql":
                cursor.execute("PRAGMA foreign_keys=ON")
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


Encode = Callable[[Sequence[str]], Any]
"""The floor of an embedding stage: encodes texts, with nothing of nurture around it."""


@_floor
def bare_embed(encode: Encode, texts: Sequence[str]) -> Timed:
    """Time one ``encode`` call on the unique ``texts``."""
    unique = list(dict.fromkeys(texts))
    logger.info("floor: bare encode of %s texts", f"{len(unique):,}")
    with measured() as timed:
        if unique:
            encode(unique)
    logger.info("floor: %.1f s", timed.seconds)
    return timed


@_floor
def bare_sendgrid_loop(
    runtime: Runtime, mock_url: str, sent: int, sample: int
) -> tuple[Timed, int]:
    """Time the sequential ``SendGridAPIClient.send`` loop on the bodies of the first messages.

    The bodies of ``min(sent, sample)`` messages are built first (not timed); the loop's time
    is scaled to ``sent`` emails.

    Returns:
        The floor, and the number of emails its loop sent.
    """
    bodies = sendgrid_delivery.request_bodies(
        runtime.engine, runtime.renderer, runtime.settings, min(sent, sample)
    )
    with measured() as timed:
        seconds = sendgrid_delivery.time_floor(mock_url, bodies) if bodies else 0.0
    timed.seconds = seconds * sent / len(bodies) if bodies else 0.0
    return timed, len(bodies)


@_floor
def bare_top_k(
    engine: Engine, embedder: Embedder, k: int, batch: int, member_ids: Sequence[int]
) -> Timed:
    """Time the product of the members' interests with the items' vectors, and a top-k.

    The interests of ``member_ids`` and the items' vectors are read first (not timed). Each
    member of ``member_ids`` has a row, as in the match stage's product: a member without an
    interest (no answers) a row of zeros.
    """
    with open_session(engine) as session:
        _, items = load_content_vectors(session, embedder)
        zero = np.zeros(items.shape[1], dtype=np.float32)
        members: list[np.ndarray] = []
        for part in chunked(sorted(member_ids), batch):
            query = select(MemberProfile.member_id, MemberProfile.interest).where(
                MemberProfile.member_id.in_(part)
            )
            found = dict(session.execute(query).tuples().all())
            for member_id in part:
                interest = found.get(member_id)
                fits = interest is not None and interest.shape == zero.shape
                members.append(interest if fits else zero)
        session.rollback()
    top = min(k, items.shape[0] - 1)
    with measured() as timed:
        for part in chunked(members, batch):
            scores = np.stack(part).astype(np.float32) @ items.T
            np.argpartition(-scores, top, axis=1)[:, :k]
    return timed


@_floor
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


def _embedding_settings(embedder: EmbedderChoice) -> dict[str, str]:
    if embedder == "stand-in":
        return {"embedding_model": STAND_IN_MODEL}
    return {"embedding_model": DEFAULT_EMBEDDING_MODEL, "embedding_backend": embedder}


def run_scale_benchmark(
    directory: Path,
    *,
    members: int,
    items: int,
    seed: int = 7,
    embedder: EmbedderChoice = "stand-in",
    database_url: str | None = None,
    chunk_size: int = 500,
    warm: bool = True,
    community: Community | None = None,
    models_dir: Path | None = None,
    floor_encode: Encode | None = None,
    sendgrid_url: str | None = None,
    send_concurrency: int | None = None,
    delivery_processes: int | None = None,
    floor_emails: int = 500,
    deliver_at_most: int | None = None,
    until: Literal["profile"] | None = None,
) -> ScaleResult:
    """Run every stage on a generated community in ``directory`` and measure each.

    Args:
        directory: An empty folder for the run's files (and the SQLite database).
        members: Members of the community generated (when ``community`` is None).
        items: Items of the library (when ``community`` is None).
        seed: Seed of the community.
        embedder: The bundled model on ``onnx-int8`` or ``torch``, or the stand-in.
        database_url: An empty database; default: a SQLite file in ``directory``.
        chunk_size: Members (or messages) per chunk, as ``NURTURE_CHUNK_SIZE``.
        warm: Also run the warm nightly after the cold one.
        community: A community prepared beforehand (shared by the runs of each database).
        models_dir: Where the model's backends are built once (``NURTURE_MODELS_DIR``).
        floor_encode: The floor of the embedding stages; default: the embedder's own ``embed``.
        sendgrid_url: A running SendGrid mock (:mod:`benchmarks.mock_sendgrid`): deliver
            through the SendGrid backend to it, then the same messages to the outbox; None:
            to the outbox only.
        send_concurrency: Senders of the delivery (``NURTURE_SEND_CONCURRENCY``); default:
            the setting's default.
        delivery_processes: Worker processes of the SendGrid delivery
            (``NURTURE_DELIVERY_PROCESSES``, as the deliver flow runs them); default: the
            setting's default. The processes start before timing, as a running deliver worker's.
        floor_emails: Emails of the SendGrid floor's loop at most (its time is scaled).
        deliver_at_most: Deliver only the first this many due emails (the others stay
            queued), to keep a very large run short; None: every due email.
        until: ``"profile"``: stop after the imports and the profile stage (the content
            library is not synced: profiling does not read it), to measure the encoder on
            the real model without the hour the rest takes; None: every stage.

    Returns:
        The figures of every stage.

    Raises:
        RuntimeError: The SendGrid mock did not receive every email sent exactly once.
    """
    if community is None:
        community = prepare_community(directory, members=members, items=items, seed=seed)
    started = time.perf_counter()
    data_dir = directory / "data"
    url = database_url or f"sqlite:///{directory / 'scale.db'}"
    values: dict[str, Any] = {
        "workspace": community.workspace,
        "data_dir": data_dir,
        "database_url": url,
        "mail_backend": "outbox",
        "allow_backfill": True,
        "chunk_size": chunk_size,
        **_embedding_settings(embedder),
    }
    if models_dir is not None:
        values["models_dir"] = models_dir
    if send_concurrency is not None:
        values["send_concurrency"] = send_concurrency
    if delivery_processes is not None:
        values["delivery_processes"] = delivery_processes
    outbox_settings = settings_from(values)
    settings = outbox_settings
    if sendgrid_url is not None:
        settings = settings_from(
            {
                **values,
                "mail_backend": "sendgrid",
                "sendgrid_api_key": sendgrid_delivery.API_KEY,
                "sendgrid_base_url": sendgrid_url,
            }
        )
    specs, files = community.specs, community.files
    runtime = Runtime(settings)
    engine = runtime.engine
    dialect = engine.dialect.name
    recorder = RecordingEmbedder(runtime.embedder)
    recorder.inner.embed(WARM_UP_TEXTS)  # builds or loads the backends: not timed
    library_embedder(recorder.inner).embed(WARM_UP_TEXTS)
    runtime.__dict__["embedder"] = recorder
    encode = floor_encode or recorder.inner.embed
    result = ScaleResult(
        members=members,
        items=len(specs),
        database=dialect,
        embedding_model=settings.embedding_model,
        chunk_size=chunk_size,
        embedder=embedder,
        setup_seconds=community.seconds,
        send_concurrency=settings.send_concurrency,
        delivery_processes=settings.delivery_processes,
        chunk_threads=runtime.chunk_threads,
        machine=_machine(),
        until=until,
    )
    logger.info("%s: %s members, embedder %s", dialect, f"{members:,}", embedder)
    figures = result.figures
    batch = chunk_size

    # imports
    for kind, path, table in (
        ("members", files.members, "members"),
        ("answers", files.answers, "answers"),
        ("activity", files.activity, "activity_events"),
    ):
        with stage_measured(f"{dialect} import {kind}") as timed:
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

    if until == "profile":
        _profile(runtime, recorder, encode, figures, batch, NOW)
        runtime.close()
        result.wall_seconds = time.perf_counter() - started
        return result

    recorder.texts.clear()
    recorder.progress = Progress(f"{dialect} content", len(specs), "texts embedded")
    with stage_measured(f"{dialect} content") as timed:
        stages.sync_workspace(runtime, NOW)
    recorder.progress = None
    figures.append(
        StageFigure(
            "content",
            len(specs),
            "items",
            timed,
            bare_embed(encode, recorder.texts),
            f"bare {_encode_label(settings.embedding_model)} of the {len(set(recorder.texts)):,} "
            "texts embedded",
        )
    )
    _nightly(runtime, recorder, encode, figures, batch, NOW)

    with stage_measured(f"{dialect} journeys") as timed:
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

    every_due = stages.due_messages(runtime, NOW)
    due = list(every_due)[:deliver_at_most] if deliver_at_most is not None else every_due
    result.due_emails, result.delivered_cap = len(every_due), deliver_at_most
    due_note = f"{len(every_due):,} due" + (
        f", the first {len(due):,} delivered (capped)" if len(due) < len(every_due) else ""
    )
    if sendgrid_url is not None:
        sendgrid_delivery.mock_stats(sendgrid_url, reset=True)
        with (
            _delivery_processes(settings) as pool,
            stage_measured(f"{dialect} deliver (sendgrid)") as timed,
        ):
            sent = _deliver(runtime, due, "deliver (sendgrid)", pool)
        stats = sendgrid_delivery.mock_stats(sendgrid_url)
        sendgrid_delivery.check_exactly_once("deliver (sendgrid)", sent.sent, sent, stats)
        floor, floor_sent = bare_sendgrid_loop(runtime, sendgrid_url, sent.sent, floor_emails)
        figures.append(
            StageFigure(
                "deliver (sendgrid)",
                sent.sent,
                "emails",
                timed,
                floor,
                "sequential `SendGridAPIClient.send` loop on the bodies of "
                f"{floor_sent:,} of them, its time scaled to the {sent.sent:,} emails",
                note=f"{due_note}, {sent.sent:,} sent, {sent.failed:,} failed; the mock "
                f"saw each exactly once; {_senders(settings)}",
            )
        )
        # The same messages again, to the outbox: another deliver run's mail backend.
        sendgrid_delivery.requeue_messages(engine, due)
        runtime.close()
        runtime = Runtime(outbox_settings)
        runtime.__dict__["embedder"] = recorder
        runtime.engine.connect().close()  # opens and checks the database: not timed
    with stage_measured(f"{dialect} deliver (outbox)") as timed:
        sent = _deliver(runtime, due, "deliver (outbox)")
        stages.finish_delivery(runtime, NOW)
    outbox = outbox_settings.resolved_outbox_dir
    figures.append(
        StageFigure(
            "deliver (outbox)",
            sent.sent,
            "emails",
            timed,
            bare_file_writes(outbox, directory / "floor-outbox"),
            "bare write of the same outbox files",
            note=f"{due_note}, {sent.sent:,} sent",
        )
    )

    if warm:
        _warm_nightly(runtime, recorder, encode, result, directory, batch)
    runtime.close()
    result.wall_seconds = time.perf_counter() - started
    return result


def _senders(settings: Settings) -> str:
    processes = settings.delivery_processes
    senders = f"concurrency {settings.send_concurrency}"
    return f"{processes} processes, {senders} each" if processes > 1 else senders


_PROCESS_RUNTIME: Runtime | None = None


def _start_delivery_process(settings: Settings) -> None:
    """Pool initializer: the worker process's runtime, as a deliver worker builds it."""
    global _PROCESS_RUNTIME
    _PROCESS_RUNTIME = Runtime(settings)
    _PROCESS_RUNTIME.engine.connect().close()


def _process_started(_: int) -> int:
    time.sleep(0.2)  # long enough for each process of the pool to take one
    return os.getpid()


def _deliver_chunk_in_process(chunk: list[int]) -> DeliverySummary:
    """Deliver one chunk in a worker process (as the deliver flow's process task runner)."""
    assert _PROCESS_RUNTIME is not None, "the pool's initializer did not run"
    return stages.deliver_chunk(_PROCESS_RUNTIME, chunk, NOW)


@contextmanager
def _delivery_processes(settings: Settings) -> Iterator[Pool | None]:
    """The worker processes of ``settings.delivery_processes`` (None for one: in this process).

    They are started, each with its runtime, before the delivery is timed.
    """
    processes = settings.delivery_processes
    if processes <= 1:
        yield None
        return
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, as a deliver worker
    with context.Pool(processes, initializer=_start_delivery_process, initargs=(settings,)) as pool:
        started = set(pool.map(_process_started, range(processes), chunksize=1))
        logger.info("%d delivery processes started", len(started))
        yield pool


def _deliver(
    runtime: Runtime, due: Sequence[int], name: str, pool: Pool | None = None
) -> DeliverySummary:
    """Deliver ``due`` in chunks, as the deliver flow hands them out (to ``pool``'s processes)."""
    summary = DeliverySummary()
    progress = Progress(f"{runtime.engine.dialect.name} {name}", len(due), "emails")
    chunks = [list(chunk) for chunk in chunked(list(due), runtime.settings.chunk_size)]
    if pool is None:
        for chunk in chunks:
            summary += stages.deliver_chunk(runtime, chunk, NOW)
            progress.advance(len(chunk))
        return summary
    for chunk, done in zip(chunks, pool.imap(_deliver_chunk_in_process, chunks), strict=True):
        summary += done
        progress.advance(len(chunk))
    return summary


def _warm_nightly(
    runtime: Runtime,
    recorder: RecordingEmbedder,
    encode: Encode,
    result: ScaleResult,
    directory: Path,
    batch: int,
) -> None:
    """New activity for 1% of the members a day later, then the nightly again (warm)."""
    engine = runtime.engine
    with engine.connect() as connection:
        external = [
            row[0]
            for row in connection.execute(
                select(Member.external_id).order_by(Member.id).limit(result.members)
            )
        ]
    step = max(1, round(1 / CHANGED_SHARE))
    changed = external[::step]
    result.changed_members = len(changed)
    later = NOW + dt.timedelta(days=1)
    path = _changed_activity(directory / "activity-warm.jsonl", changed, later)
    with stage_measured(f"{engine.dialect.name} warm import activity") as timed:
        summary = stages.import_file(runtime, "activity", path)
    result.warm.append(
        StageFigure(
            "import activity",
            summary.read,
            "records",
            timed,
            bare_insert(engine, ["activity_events"], batch, "idempotency_key LIKE 'scale-warm-%'"),
            "bare insert of the rows stored",
        )
    )
    # The next night is another process: only what the cold run stored on disk is left.
    forget_run_states()
    _nightly(runtime, recorder, encode, result.warm, batch, later, "warm ")


def _encode_label(embedding_model: str) -> str:
    return "embed (stand-in)" if embedding_model == STAND_IN_MODEL else "PyTorch encode"


def _profile(
    runtime: Runtime,
    recorder: RecordingEmbedder,
    encode: Encode,
    figures: list[StageFigure],
    batch: int,
    now: dt.datetime,
    label: str = "",
) -> None:
    """The profile stage at ``now`` as the nightly runs it, against its floor; add its figure."""
    engine, settings = runtime.engine, runtime.settings
    name = f"{engine.dialect.name} {label}"
    profile_stage = stages.NIGHTLY.stage("profile")
    recorder.texts.clear()
    with stage_measured(f"{name}profile") as timed:
        ids = profile_stage.over.list_items(runtime, now)  # type: ignore[union-attr]
        progress = Progress(f"{name}profile", len(ids), "members")
        profiled = 0
        chunks = list(chunked(ids, settings.chunk_size))
        done = map_at_once(
            lambda chunk: stages.profile_chunk(runtime, chunk, now), chunks, runtime.chunk_threads
        )
        for chunk, summary in zip(chunks, done, strict=True):
            profiled += summary.profiled
            progress.advance(len(chunk))
    floor = _plus(
        bare_embed(encode, recorder.texts),
        bare_insert(engine, ["member_profiles"], batch, _at(engine, "computed_at", now)),
    )
    figures.append(
        StageFigure(
            "profile",
            profiled,
            "members",
            timed,
            floor,
            f"bare {_encode_label(settings.embedding_model)} of the "
            f"{len(set(recorder.texts)):,} new texts + "
            "bare insert of the profiles",
            note=f"{len(ids):,} members listed, {len(recorder.texts):,} texts embedded",
        )
    )


def _nightly(
    runtime: Runtime,
    recorder: RecordingEmbedder,
    encode: Encode,
    figures: list[StageFigure],
    batch: int,
    now: dt.datetime,
    label: str = "",
) -> None:
    """Profile, segment, match and best hours at ``now`` as the nightly does; add figures."""
    engine, settings = runtime.engine, runtime.settings
    name = f"{engine.dialect.name} {label}"
    match_stage = stages.NIGHTLY.stage("match")
    _profile(runtime, recorder, encode, figures, batch, now, label)
    with stage_measured(f"{name}segment") as timed:
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
    with stage_measured(f"{name}match") as timed:
        ids = match_stage.over.list_items(runtime, now)  # type: ignore[union-attr]
        progress = Progress(f"{name}match", len(ids), "members")
        started = stages.start_matching(runtime, now)
        matched = recommendations = 0
        chunks = list(chunked(ids, settings.chunk_size))
        done = map_at_once(
            lambda chunk: stages.match_chunk(runtime, chunk, now, **started),
            chunks,
            runtime.chunk_threads,
        )
        for chunk, summary_m in zip(chunks, done, strict=True):
            matched += summary_m.members
            recommendations += summary_m.recommendations
            progress.advance(len(chunk))
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
            "bare matrix product + top-k of every matched member + bare insert of the rows",
            note=f"{recommendations:,} recommendations for {matched:,} members",
        )
    )
    with stage_measured(f"{name}best hours") as timed:
        hours = stages.best_hours(runtime, now)
    figures.append(
        StageFigure(
            "best hours",
            hours.members,
            "members",
            timed,
            None,
            "none (reads the opens and clicks once, a page of members at a time, and writes "
            "the best hours that moved)",
            note=f"{hours.from_own_events:,} from their own opens and clicks",
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


_DATABASE_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


@dataclass
class ScaleReport:
    """Everything one ``make bench-scale`` run measured: each database, and the encoder check.

    Attributes:
        members: Members of the community.
        embedder: The ``--embedder`` chosen.
        results: One run per database measured, in order.
        skipped: Databases not measured, with the reason.
        encoders: The encoder check (None with the stand-in).
        command: The command line that wrote the report.
    """

    members: int
    embedder: EmbedderChoice
    results: list[ScaleResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    encoders: EncoderBenchmarkResult | None = None
    command: str = ""


def _headline_cell(figure: StageFigure | None) -> str:
    if figure is None:
        return "-"
    ratio = figure.ratio
    return (
        f"{figure.stage.seconds:,.1f} s, {figure.rows_per_second:,.0f} {figure.unit}/s"
        + (f", {ratio:.1f}x floor" if ratio is not None else "")
        + f", {_mb(figure.stage.peak_bytes)} MB"
    )


def _headlines(report: ScaleReport) -> list[str]:
    """The summary table: a column per database, a row per headline figure."""
    results = report.results
    if not results:
        return ["No database was measured."]
    names = dict.fromkeys(figure.name for result in results for figure in result.figures)
    header = "| Figure | " + " | ".join(_DATABASE_NAMES[r.database] for r in results) + " |"
    lines = [header, "|---|" + "---:|" * len(results)]

    def row(label: str, cells: Sequence[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row(
        "cold nightly (profile + segment + match)",
        [f"**{r.nightly_seconds(r.figures):,.1f} s**" for r in results],
    )
    for name in names:
        row(
            name + " (time, rate, ratio to floor, peak RSS)",
            [_headline_cell(r.figure(name)) for r in results],
        )
    sendgrid = [r.figure("deliver (sendgrid)") for r in results]
    if any(sendgrid):
        row(
            "SendGrid delivery: emails/s against the sequential `send()` loop",
            [
                f"**{f.rows_per_second:,.0f}** vs {f.rows / f.floor.seconds:,.0f}"
                if f is not None and f.floor is not None and f.floor.seconds > 0
                else "-"
                for f in sendgrid
            ],
        )
    if all(r.warm for r in results):
        row(
            "warm nightly, 1% changed (share of the cold one)",
            [
                f"{r.nightly_seconds(r.warm):,.1f} s "
                f"({r.nightly_seconds(r.warm) / r.nightly_seconds(r.figures):.1%})"
                for r in results
            ],
        )
    row("largest peak RSS (MB)", [f"{_mb(r.peak_bytes)}" for r in results])
    row(
        "whole run of the database, floors included (s)",
        [f"{r.wall_seconds:,.0f}" for r in results],
    )
    lines.append("")
    encoders = report.encoders
    if encoders is not None:
        for backend, agreement in encoders.agreement.items():
            timing = encoders.backends[backend]
            cosine = (
                f"cosine with PyTorch {agreement.cosine_mean:.4f} mean, "
                f"{agreement.cosine_min:.4f} min"
                if agreement.cosine_mean is not None and agreement.cosine_min is not None
                else "other dimension"
            )
            lines.append(
                f"- Encoder `{backend}`: {cosine}, top-10 neighbours shared "
                f"{agreement.neighbour_overlap:.2f}, {timing.ratio_to(encoders.floor):.2f}x the "
                f"time of the bare PyTorch encode ({encoders.texts:,} texts)."
            )
    else:
        lines.append(
            "- Embedder: the **stand-in** (`hashing-384`, no neural network): profile and "
            "content figures do not include the model; no encoder check."
        )
    lines.append(
        "- Load average (1, 5, 15 min) at the start of each database's run: "
        + "; ".join(
            f"{_DATABASE_NAMES[r.database]} {r.machine.get('Load average at start', '?')}"
            for r in results
        )
        + f" ({os.cpu_count()} CPUs)."
    )
    for database, reason in report.skipped.items():
        lines.append(
            f"- **{database} not measured** (`--postgres-url`, default "
            f"`NURTURE_BENCH_POSTGRES_URL`): {reason}"
        )
    lines.append("")
    return lines


def render_scale_section(result: ScaleResult, heading: str = "##") -> list[str]:
    """The figures of one database's run, as Markdown lines."""
    lines = [
        f"{heading} {_DATABASE_NAMES.get(result.database, result.database)}",
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
            *_rows(result.warm),
            "",
            f"- **Warm nightly (profile + segment + match): {warm:.2f} s, {warm / cold:.1%} of "
            f"the cold one ({cold:.2f} s).**",
        ]
    if result.until is not None:
        lines.append(
            f"- **Stopped after the {result.until} stage** (`--until {result.until}`): the "
            "later stages did not run."
        )
    if result.delivered_cap is not None and result.delivered_cap < result.due_emails:
        lines.append(
            f"- **Delivery capped** (`--deliver-at-most {result.delivered_cap:,}`): "
            f"{result.delivered_cap:,} of the {result.due_emails:,} due emails were delivered, "
            "the others stayed queued."
        )
    lines += [
        f"- Largest resident set size in any stage: {_mb(result.peak_bytes)} MB.",
        f"- The whole run of this database, floors included: {result.wall_seconds:,.0f} s.",
        "- Machine: " + "; ".join(f"{k} {v}" for k, v in result.machine.items()) + ".",
        "",
    ]
    return lines


def render_scale_report(report: ScaleReport) -> str:
    """The whole report of a ``make bench-scale`` run, as Markdown."""
    first = report.results[0] if report.results else None
    embedder = (
        "`hashing-384`, a **stand-in** (feature hashing, no neural network), chosen for a quick "
        "run (`--embedder stand-in`)"
        if report.embedder == "stand-in"
        else f"the bundled model (`{DEFAULT_EMBEDDING_MODEL}`) on the `{report.embedder}` "
        "backend; the floor of the embedding stages is the bare PyTorch encode "
        "(`SentenceTransformer.encode`) of the same texts (the process holds that PyTorch "
        "model too, in every stage's resident set size)"
    )
    lines = [
        "# Benchmarks at scale",
        "",
        f"Written by `{report.command}` (`benchmarks/scale.py`); do not edit by hand.",
        "",
        "## Headline figures",
        "",
        *_headlines(report),
        "## What is measured",
        "",
        f"A community of **{report.members:,} members** from the demo generator and a library "
        f"of **{first.items if first else 0:,} items** (the workspace's items cloned, each "
        "clone's body and tags mixed with two other items' of its language: related items, "
        "not copies), the same on each database, through the stages as the nightly and "
        "deliver runs call them "
        f"(`nurture.stages`), in chunks of {first.chunk_size if first else 0}; the profile "
        "and match stages work on their chunks as many at a time as a run in this process "
        "does (`NURTURE_CHUNK_THREADS`; here "
        + ", ".join(f"{result.chunk_threads} on {result.database}" for result in report.results)
        + "). Each stage's "
        "peak memory is the process's resident set size (sampled every 20 ms while it runs; "
        "the process holds the libraries and the previous stages' leftovers too). Each floor "
        "runs in the same process right after its stage, on the same rows, and hands the "
        "memory it freed back to the system when done (glibc's `malloc_trim`: a nightly run "
        "has no floors, so their leftovers are not the next stage's); the ratio is the "
        "stage's time over its floor's. Floors: imports and the rows each later stage writes, "
        "the bare insert of the same rows into an empty copy of the table with its primary key, "
        "unique keys and indexes, not its foreign keys (`executemany` on SQLite, `COPY` on "
        "PostgreSQL; before 2026-12-07 the copy had no index, so earlier ratios were higher); "
        "profile and content, the bare encode of the texts the "
        "stage embedded; match, the bare matrix product + `argpartition` top-k of every "
        "matched member; SendGrid delivery, the sequential `SendGridAPIClient.send` loop on "
        "the same request bodies; outbox delivery, the bare write of the same files.",
        "",
        f"Embedder: {embedder}.",
        "",
        "Delivery goes through the SendGrid backend (`SendGridMailer`, exactly-once "
        "bookkeeping of `deliver_messages`, concurrency "
        f"{first.send_concurrency if first else 0}"
        + (
            f" in each of {first.delivery_processes} worker processes, as the deliver flow "
            "runs them with `NURTURE_DELIVERY_PROCESSES` (started before timing, as a running "
            "deliver worker's; their memory is not in the peak; the outbox delivery after it "
            "runs in one)"
            if first is not None and first.delivery_processes > 1
            else ""
        )
        + ") to a local mock of Mail Send "
        f"(`benchmarks/mock_sendgrid.py`) answering each request after "
        f"{sendgrid_delivery.LATENCY_MS:.0f} ms; the mock counts each message id (each must "
        "arrive exactly once). The same messages are then put back in the queue and delivered "
        "to the outbox. The warm nightly runs a day later: new activity for 1% of the members "
        "is imported, then profile, segment, match and best hours run again (the warm nightly's "
        "time is that of profile, segment and match); the match state kept in "
        "memory is forgotten first, as in a new process.",
        "",
    ]
    for result in report.results:
        lines += render_scale_section(result)
    if report.encoders is not None:
        lines += render_encoders_section(report.encoders)
    if first is not None:
        lines.append(
            f"Not timed: building the workspace and generating the community "
            f"({first.setup_seconds:.1f} s)."
        )
    return "\n".join(lines) + "\n"


def _postgres_reason(url: str) -> str | None:
    """Why the PostgreSQL server of ``url`` cannot be used; None when it can."""
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        return str(database_error(url, error))
    finally:
        engine.dispose()
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the scale benchmark on each database and write its report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--members", type=int, default=int(os.environ.get("MEMBERS", "100000")))
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--embedder",
        choices=EMBEDDERS,
        default=os.environ.get("EMBEDDER", EMBEDDERS[0]),
        help="The bundled model on onnx-int8 (default) or torch, or the stand-in (quick runs).",
    )
    parser.add_argument(
        "--databases",
        default="sqlite,postgresql",
        help="Comma-separated, among sqlite and postgresql (default: both).",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NURTURE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="A PostgreSQL server: a database of its own is created there and dropped after "
        f"(default NURTURE_BENCH_POSTGRES_URL, else {DEFAULT_POSTGRES_URL}).",
    )
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--send-concurrency", type=int, help="Default: the setting's default.")
    parser.add_argument(
        "--delivery-processes",
        type=int,
        help="Worker processes of the SendGrid delivery, as the deliver flow's "
        "(NURTURE_DELIVERY_PROCESSES); default: the setting's default.",
    )
    parser.add_argument("--floor-emails", type=int, default=500)
    parser.add_argument(
        "--encoder-check-members",
        type=int,
        default=2000,
        help="Demo members whose free texts the encoder check embeds.",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Settings().resolved_models_dir,
        help="Where the model's backends are built once (default: NURTURE_MODELS_DIR's).",
    )
    parser.add_argument(
        "--deliver-at-most",
        type=int,
        help="Deliver only the first this many due emails (the rest stay queued; the report "
        "says so): a million members' emails to the mock take long (default: all).",
    )
    parser.add_argument("--no-warm", action="store_true", help="Skip the warm nightly.")
    parser.add_argument(
        "--until",
        choices=("profile",),
        help="Stop after this stage: 'profile' runs the imports and the profile stage only "
        "(the encoder's figure on the real model, without the rest's hour).",
    )
    parser.add_argument("--output", type=Path, help="Write the report here (else print it).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = set(databases) - set(_DATABASE_NAMES)
    if unknown:
        parser.error(f"--databases: expected sqlite or postgresql, found {sorted(unknown)}")
    command = "python -m benchmarks.scale " + " ".join(sys.argv[1:] if argv is None else list(argv))
    report = ScaleReport(args.members, args.embedder, command=command.strip())
    models_dir = args.models_dir.resolve()
    floor_encode: Encode | None = None
    if args.embedder != "stand-in":
        bare = load_bare_model(DEFAULT_EMBEDDING_MODEL)
        batch_size = Settings().embedding_batch_size
        encode_bare(bare, WARM_UP_TEXTS, batch_size)

        def floor_encode(texts: Sequence[str]) -> np.ndarray:
            return encode_bare(bare, texts, batch_size)

    with (
        tempfile.TemporaryDirectory(prefix="nurture-scale-") as folder,
        sendgrid_delivery.mock_sendgrid() as mock,
    ):
        community = prepare_community(
            Path(folder), members=args.members, items=args.items, seed=args.seed
        )
        for database in databases:
            directory = Path(folder) / database
            directory.mkdir()
            options: dict[str, Any] = {
                "members": args.members,
                "items": args.items,
                "seed": args.seed,
                "embedder": args.embedder,
                "chunk_size": args.chunk_size,
                "warm": not args.no_warm,
                "community": community,
                "models_dir": models_dir,
                "floor_encode": floor_encode,
                "sendgrid_url": mock,
                "send_concurrency": args.send_concurrency,
                "delivery_processes": args.delivery_processes,
                "floor_emails": args.floor_emails,
                "deliver_at_most": args.deliver_at_most,
                "until": args.until,
            }
            if database == "sqlite":
                report.results.append(run_scale_benchmark(directory, **options))
                continue
            reason = _postgres_reason(args.postgres_url)
            if reason is not None:
                logger.warning("PostgreSQL skipped: %s", reason)
                report.skipped["PostgreSQL"] = reason
                continue
            with sendgrid_delivery.scratch_database(args.postgres_url, directory) as url:
                report.results.append(run_scale_benchmark(directory, database_url=url, **options))
    if args.embedder != "stand-in":
        logger.info("encoder check: %s against PyTorch", args.embedder)
        settings = Settings(workspace=REPO / "content", models_dir=models_dir)
        report.encoders = run_encoder_benchmark(
            settings, args.encoder_check_members, args.seed, 1, NOW, backends=(args.embedder,)
        )
    text_report = render_scale_report(report)
    if args.output:
        args.output.write_text(text_report, encoding="utf-8")
    else:
        sys.stdout.write(text_report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
