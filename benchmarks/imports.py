"""Time imports of members, activity events and answers against a bare bulk insert of the same rows.

The import figure: :func:`nurture.ingest.import_members` reading the demo community's CSV file
into a database without members, :func:`nurture.ingest.import_activity` and
:func:`nurture.ingest.import_answers` reading its JSON Lines files (generated with the
workspace's library and questionnaire, the library synced to the database first, so the import
checks events against the items' dates) into a database holding the members and nothing else of
these tables; on SQLite and, when a PostgreSQL URL is given, on PostgreSQL. The whole import is
timed: reading and validating every record, resolving members, the rejects
file, each batch's write and commit.

The floor is what storing those rows costs at the least: the rows the import stored, read back
in their stored form before timing, written into the same empty table by the driver alone, in
batches of the same size with a commit after each (``executemany`` of a plain ``INSERT`` on
SQLite, ``COPY`` into the table on PostgreSQL). The ratio is what the import costs on top.

A re-import of the same file (every record already stored: nothing to write) is timed too.

Run it with ``python -m benchmarks.imports`` (``--help`` for the options); the report is printed,
or written to ``--output``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import logging
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, make_url, text

from benchmarks.measurement import Measurement
from nurture.demo import generate_library_community
from nurture.ingest import (
    DEFAULT_BATCH_SIZE,
    MEMBER_COLUMNS,
    ImportSummary,
    import_activity,
    import_answers,
    import_members,
)
from nurture.storage import create_database_engine, migrate_database, session_scope
from nurture.workspace import (
    Questionnaire,
    load_content_library,
    load_questionnaire,
    sync_content_items,
)

__all__ = [
    "KINDS",
    "ImportFigure",
    "ImportsBenchmarkResult",
    "main",
    "prepare_import_files",
    "render_imports_section",
    "run_imports_benchmark",
]

logger = logging.getLogger("benchmarks")

REPO = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
"""The demo community's clock: every event of the files happened before it."""
_EVENTS_PER_MEMBER = 9
_ANSWERS_PER_MEMBER = 4.5
KINDS = ("members", "activity", "answers")
"""The kinds of file the benchmark imports."""
_STORED = {
    "members": (
        "members",
        (
            *MEMBER_COLUMNS,
            "attributes",
            "unsubscribed_categories",
            "created_at",
            "updated_at",
        ),
    ),
    "activity": (
        "activity_events",
        ("member_id", "type", "occurred_at", "content_key", "properties", "idempotency_key"),
    ),
    "answers": ("answers", ("member_id", "question_key", "value", "answered_at")),
}


@dataclass(frozen=True)
class ImportFiles:
    """The files an import benchmark reads."""

    members: Path
    activity: Path
    answers: Path
    members_count: int
    activity_rows: int
    answer_rows: int


@dataclass(frozen=True)
class ImportFigure:
    """One kind of file imported into one database, against its floor.

    Attributes:
        database: ``sqlite`` or ``postgresql``.
        kind: ``members``, ``activity`` or ``answers``.
        rows: Rows stored by the import (records of the file, less any refused).
        refused: Records refused.
        importing: The import into the empty table.
        reimporting: The same import again (every record already stored).
        floor: The bare bulk insert of the rows stored.
        importing_cpu: The import's median CPU seconds in this process (SQLite only: all of its
            work is in the process; PostgreSQL's is mostly in the server).
        floor_cpu: The floor's median CPU seconds in this process (SQLite only).
    """

    database: str
    kind: str
    rows: int
    refused: int
    importing: Measurement
    reimporting: Measurement
    floor: Measurement
    importing_cpu: float | None = None
    floor_cpu: float | None = None

    @property
    def rows_per_second(self) -> float:
        """Rows the import stores per second."""
        return self.rows / self.importing.median

    @property
    def floor_rows_per_second(self) -> float:
        """Rows the bare bulk insert stores per second."""
        return self.rows / self.floor.median

    @property
    def ratio(self) -> float:
        """The import's time over the floor's."""
        return self.importing.ratio_to(self.floor)

    @property
    def cpu_ratio(self) -> float | None:
        """The import's CPU time over the floor's (steadier than wall time on a loaded machine)."""
        if self.importing_cpu is None or not self.floor_cpu:
            return None
        return self.importing_cpu / self.floor_cpu


@dataclass(frozen=True)
class ImportsBenchmarkResult:
    """The figures of one run."""

    figures: list[ImportFigure]
    files: ImportFiles
    batch_size: int
    repeats: int
    seed: int
    generate_seconds: float
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


def prepare_import_files(
    directory: Path, *, activity_rows: int, answer_rows: int, seed: int
) -> ImportFiles:
    """Generate a demo community large enough, and cut its files to the numbers of rows asked.

    Args:
        directory: Where the files go.
        activity_rows: Activity events wanted.
        answer_rows: Answers wanted.
        seed: The demo community's seed.

    Returns:
        The files.

    Raises:
        RuntimeError: The community generated has fewer records than asked.
    """
    specs = load_content_library(REPO / "content" / "library")
    questionnaire = load_questionnaire(REPO / "content" / "questionnaire.yaml")
    members = max(
        100, int(activity_rows / _EVENTS_PER_MEMBER), int(answer_rows / _ANSWERS_PER_MEMBER)
    )
    demo = generate_library_community(
        directory / "demo",
        members,
        seed,
        now=NOW,
        library=specs,
        questionnaire=questionnaire,
    )
    activity = _first_lines(demo.activity, directory / "activity.jsonl", activity_rows)
    answers = _first_lines(demo.answers, directory / "answers.jsonl", answer_rows)
    return ImportFiles(demo.members, activity, answers, members, activity_rows, answer_rows)


def _first_lines(source: Path, target: Path, count: int) -> Path:
    with source.open(encoding="utf-8") as lines, target.open("w", encoding="utf-8") as out:
        written = 0
        for line in itertools.islice(lines, count):
            out.write(line)
            written += 1
    if written < count:
        raise RuntimeError(f"{source} has {written} records, fewer than the {count} asked")
    return target


def run_imports_benchmark(
    *,
    activity_rows: int = 1_000_000,
    answer_rows: int = 300_000,
    seed: int = 7,
    repeats: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    postgres_url: str | None = None,
    work_dir: Path | None = None,
    kinds: Sequence[str] = KINDS,
) -> ImportsBenchmarkResult:
    """Time the imports of members, activity and answers, and their floors, on each database.

    Args:
        activity_rows: Activity events in the file.
        answer_rows: Answers in the file.
        seed: The demo community's seed.
        repeats: Rounds; each figure is the median.
        batch_size: Records per batch, for the import and the floor alike.
        postgres_url: A PostgreSQL database to measure on too (in a schema of its own,
            dropped at the end); SQLite alone when ``None``.
        work_dir: Where files and the SQLite database go; a temporary folder when ``None``.
        kinds: The kinds of file to import (of ``KINDS``).

    Returns:
        The figures.
    """
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=work_dir) as temporary:
        directory = Path(temporary)
        started = time.perf_counter()
        files = prepare_import_files(
            directory, activity_rows=activity_rows, answer_rows=answer_rows, seed=seed
        )
        generate_seconds = time.perf_counter() - started
        questionnaire = load_questionnaire(REPO / "content" / "questionnaire.yaml")
        figures = _measure_sqlite(directory, files, questionnaire, repeats, batch_size, kinds)
        if postgres_url:
            figures += _measure_postgres(
                directory, postgres_url, files, questionnaire, repeats, batch_size, kinds
            )
    return ImportsBenchmarkResult(
        figures,
        files,
        batch_size,
        repeats,
        seed,
        generate_seconds,
        load_before,
        os.getloadavg(),
    )


# --- one database ---------------------------------------------------------------------------


def _seed_database(engine: Engine, files: ImportFiles, rejects: Path, *, members: bool) -> None:
    """Migrate, sync the library, import the members: the state each timed import starts from."""
    migrate_database(engine)
    with session_scope(engine) as session:
        sync_content_items(session, load_content_library(REPO / "content" / "library"), now=NOW)
    if not members:
        return
    with session_scope(engine) as session:
        summary = import_members(session, files.members, rejects / "members.csv")
    if summary.refused:
        raise RuntimeError(f"demo members refused: {summary.problems[:3]}")


def _import(
    engine: Engine,
    kind: str,
    files: ImportFiles,
    questionnaire: Questionnaire,
    rejects: Path,
    batch_size: int,
) -> tuple[float, float, ImportSummary]:
    with session_scope(engine) as session:
        started = time.perf_counter()
        cpu = time.process_time()
        if kind == "members":
            summary = import_members(
                session, files.members, rejects / "members.csv", batch_size=batch_size
            )
        elif kind == "activity":
            summary = import_activity(
                session, files.activity, rejects / "activity.csv", batch_size=batch_size
            )
        else:
            summary = import_answers(
                session,
                files.answers,
                questionnaire,
                rejects / "answers.csv",
                batch_size=batch_size,
            )
        return time.perf_counter() - started, time.process_time() - cpu, summary


def _measure_kind(
    database: str,
    kind: str,
    fresh_engine: Callable[[], Engine],
    files: ImportFiles,
    questionnaire: Questionnaire,
    rejects: Path,
    repeats: int,
    batch_size: int,
    floor: Callable[[Engine, list[tuple[Any, ...]]], tuple[float, float]],
) -> ImportFigure:
    importing: list[float] = []
    reimporting: list[float] = []
    floors: list[float] = []
    importing_cpu: list[float] = []
    floors_cpu: list[float] = []
    summary: ImportSummary | None = None
    for round_number in range(repeats):
        engine = fresh_engine()
        seconds, cpu, summary = _import(engine, kind, files, questionnaire, rejects, batch_size)
        importing.append(seconds)
        importing_cpu.append(cpu)
        again, _, second = _import(engine, kind, files, questionnaire, rejects, batch_size)
        if second.stored or second.updated:
            raise RuntimeError(f"re-importing {kind} stored {second.stored} rows again")
        reimporting.append(again)
        rows = _stored_rows(engine, kind)
        engine.dispose()
        engine = fresh_engine()
        floor_seconds, floor_cpu = floor(engine, rows)
        floors.append(floor_seconds)
        floors_cpu.append(floor_cpu)
        engine.dispose()
        logger.info(
            "%s %s round %d: import %.1f s, re-import %.1f s, floor %.1f s",
            database,
            kind,
            round_number + 1,
            importing[-1],
            reimporting[-1],
            floors[-1],
        )
    assert summary is not None
    label = f"{database} {kind}"
    return ImportFigure(
        database,
        kind,
        summary.stored,
        summary.refused,
        Measurement(f"import {label}", tuple(importing)),
        Measurement(f"re-import {label}", tuple(reimporting)),
        Measurement(f"bare insert {label}", tuple(floors)),
        statistics.median(importing_cpu) if database == "sqlite" else None,
        statistics.median(floors_cpu) if database == "sqlite" else None,
    )


_JSON_COLUMNS = frozenset({"properties", "value", "attributes", "unsubscribed_categories"})


def _stored_rows(engine: Engine, kind: str) -> list[tuple[Any, ...]]:
    """The rows the import stored, in the order stored, as the database gives them back raw."""
    table, columns = _STORED[kind]
    selected = ", ".join(
        f"{name}::text" if engine.dialect.name == "postgresql" and name in _JSON_COLUMNS else name
        for name in columns
    )
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.exec_driver_sql(f"SELECT {selected} FROM {table} ORDER BY id")
        ]


def _measure_sqlite(
    directory: Path,
    files: ImportFiles,
    questionnaire: Questionnaire,
    repeats: int,
    batch_size: int,
    kinds: Sequence[str],
) -> list[ImportFigure]:
    rejects = directory / "rejects"
    rejects.mkdir(exist_ok=True)
    seeded = {}
    for members in (False, True):  # without the members (to import them), with them
        seeded[members] = directory / f"seeded-{'members' if members else 'empty'}.db"
        engine = create_database_engine(f"sqlite:///{seeded[members]}")
        _seed_database(engine, files, rejects, members=members)
        engine.dispose()
    database = directory / "bench.db"

    def fresh_engine_for(kind: str) -> Callable[[], Engine]:
        def fresh_engine() -> Engine:
            for suffix in ("", "-wal", "-shm"):
                database.with_name(database.name + suffix).unlink(missing_ok=True)
            shutil.copyfile(seeded[kind != "members"], database)
            os.sync()  # the copy's writes are not the timed run's to flush
            return create_database_engine(f"sqlite:///{database}")

        return fresh_engine

    def make_floor(kind: str) -> Callable[[Engine, list[tuple[Any, ...]]], tuple[float, float]]:
        table, columns = _STORED[kind]
        statement = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        )

        def floor(engine: Engine, rows: list[tuple[Any, ...]]) -> tuple[float, float]:
            with engine.connect() as connection:
                driver = connection.connection.driver_connection
                started = time.perf_counter()
                cpu = time.process_time()
                for start in range(0, len(rows), batch_size):
                    driver.executemany(statement, rows[start : start + batch_size])
                    driver.commit()
                return time.perf_counter() - started, time.process_time() - cpu

        return floor

    return [
        _measure_kind(
            "sqlite",
            kind,
            fresh_engine_for(kind),
            files,
            questionnaire,
            rejects,
            repeats,
            batch_size,
            make_floor(kind),
        )
        for kind in kinds
    ]


def _measure_postgres(
    directory: Path,
    url: str,
    files: ImportFiles,
    questionnaire: Questionnaire,
    repeats: int,
    batch_size: int,
    kinds: Sequence[str],
) -> list[ImportFigure]:
    rejects = directory / "rejects"
    rejects.mkdir(exist_ok=True)
    schema = f"nurture_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_database_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    parsed = make_url(url)
    own_url = parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    try:
        engine = create_database_engine(own_url)
        _seed_database(engine, files, rejects, members=True)
        engine.dispose()

        def fresh_engine_for(kind: str) -> Callable[[], Engine]:
            # The members go last: emptying their table empties the others.
            emptied = "members" if kind == "members" else "activity_events, answers"

            def fresh_engine() -> Engine:
                engine = create_database_engine(own_url)
                with engine.begin() as connection:
                    connection.execute(text(f"TRUNCATE {emptied} RESTART IDENTITY CASCADE"))
                    connection.execute(text("ANALYZE members"))
                return engine

            return fresh_engine

        def make_floor(
            kind: str,
        ) -> Callable[[Engine, list[tuple[Any, ...]]], tuple[float, float]]:
            table, columns = _STORED[kind]
            statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"

            def floor(engine: Engine, rows: list[tuple[Any, ...]]) -> tuple[float, float]:
                with engine.connect() as connection:
                    driver = connection.connection.driver_connection
                    started = time.perf_counter()
                    cpu = time.process_time()
                    for start in range(0, len(rows), batch_size):
                        with driver.cursor() as cursor, cursor.copy(statement) as copy:
                            for row in rows[start : start + batch_size]:
                                copy.write_row(row)
                        driver.commit()
                    return time.perf_counter() - started, time.process_time() - cpu

            return floor

        return [
            _measure_kind(
                "postgresql",
                kind,
                fresh_engine_for(kind),
                files,
                questionnaire,
                rejects,
                repeats,
                batch_size,
                make_floor(kind),
            )
            for kind in sorted(kinds, key=lambda kind: kind == "members")
        ]
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


# --- report ---------------------------------------------------------------------------------


def render_imports_section(result: ImportsBenchmarkResult) -> list[str]:
    """The Markdown of the import figures: what is measured, the table, the notes."""
    files = result.files
    lines = [
        "## Imports",
        "",
        f"`import_members` reading the demo community's CSV file "
        f"(`generate_demo_community`, seed {result.seed}, {files.members_count:,} members) into "
        f"a database holding the synced library and no member; `import_activity` and "
        f"`import_answers` reading its JSON Lines files (cut to {files.activity_rows:,} events "
        f"and {files.answer_rows:,} answers), each into a database holding the members and the "
        f"synced library; in batches of "
        f"{result.batch_size:,} records. The floor writes the rows the import stored (read "
        f"back before timing) into the same empty table with the driver alone, in batches of "
        f"the same size, a commit after each: `executemany` of a plain `INSERT` on SQLite, "
        f"`COPY` on PostgreSQL. The re-import reads the same file again (everything already "
        f"stored). Median of {result.repeats} round(s).",
        "",
        "| database | file | rows | import | rows/s | floor | floor rows/s | ratio | CPU ratio "
        "| re-import |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for figure in result.figures:
        cpu = figure.cpu_ratio
        cpu_text = (
            f"{cpu:.2f}x ({figure.importing_cpu:.1f} s / {figure.floor_cpu:.1f} s)"
            if cpu is not None
            else "-"
        )
        lines.append(
            f"| {figure.database} | {figure.kind} | {figure.rows:,} | "
            f"{figure.importing.median:.1f} s | {figure.rows_per_second:,.0f} | "
            f"{figure.floor.median:.1f} s | {figure.floor_rows_per_second:,.0f} | "
            f"**{figure.ratio:.2f}x** | {cpu_text} | {figure.reimporting.median:.1f} s |"
        )
    noisy = [f for f in result.figures for m in (f.importing, f.floor) if m.is_noisy]
    lines += [
        "",
        f"- Not timed: generating the community ({result.generate_seconds:.0f} s), the "
        "members' import that seeds the databases of the other files, copying or emptying "
        "the database between rounds, reading the rows back.",
        "- CPU ratio (SQLite): the CPU seconds of this process, import over floor; all of "
        "SQLite's work is in the process, so on a loaded machine it is steadier than the wall "
        "clock, which charges the import (CPU-bound) for the other processes more than the "
        "floor (which waits on the disk). PostgreSQL's work is in its server: no CPU ratio.",
        f"- Machine: Python {platform.python_version()}; CPUs {os.cpu_count()}; load average "
        f"at start {' '.join(f'{v:.2f}' for v in result.load_before)}, at end "
        f"{' '.join(f'{v:.2f}' for v in result.load_after)}.",
    ]
    refused = [f"{f.database} {f.kind}: {f.refused}" for f in result.figures if f.refused]
    if refused:
        lines.append(f"- Records refused by the import: {', '.join(refused)}.")
    if noisy:
        lines.append(
            "- **Noisy run**: rounds disagree by more than 25 %; re-run on a quiet machine."
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the import benchmark and print (or write) its report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activity-rows", type=int, default=1_000_000)
    parser.add_argument("--answer-rows", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NURTURE_BENCH_POSTGRES_URL"),
        help="Also measure on this PostgreSQL database (default: $NURTURE_BENCH_POSTGRES_URL).",
    )
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=list(KINDS),
        help="The kinds of file to import (default: all).",
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = run_imports_benchmark(
        activity_rows=args.activity_rows,
        answer_rows=args.answer_rows,
        seed=args.seed,
        repeats=args.repeats,
        batch_size=args.batch_size,
        postgres_url=args.postgres_url,
        work_dir=args.work_dir,
        kinds=args.kinds,
    )
    report = "\n".join(render_imports_section(result)) + "\n"
    if args.output:
        args.output.write_text(report, encoding="utf-8")
    else:
        sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
