"""Time one pass of the journey engine on the demo community against inserting what it wrote.

The third figure of ``make bench``: :func:`nurture.journeys.advance_journeys` with the
workspace's journeys and sending rules, once at a fixed time, on a fresh copy of the demo
community's SQLite database (the file is copied before each round, never re-imported), then the
commit, as the pipeline's journeys stage runs it. Content is picked by :class:`RotatingContent`,
a cheap deterministic stand-in for the recommendations, so that ranking content (the ranking
figure) is not part of this one.

The baseline is the floor of that work: the ``Journey``, ``Enrollment`` and ``Message`` rows the
engine wrote, and the ``CommunityMilestone`` rows its milestone trigger records (read back after
its run, in their final state), inserted with a bare ``insert()`` executemany into another fresh
copy of the database, after one query reading the members, then the commit. The ratio says what
deciding those rows costs on top of writing them: triggers, consent, suppression, audiences and
goals, steps and sending rules, and the queries behind them.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event, func, insert, select
from sqlalchemy.orm import Session

from benchmarks.measurement import Measurement
from nurture.journeys import (
    JourneyDefinition,
    JourneySummary,
    SendingRules,
    advance_journeys,
    load_journeys,
    load_sending_rules,
)
from nurture.storage import (
    Base,
    CommunityMilestone,
    ContentItem,
    Enrollment,
    Journey,
    Member,
    Message,
    create_database_engine,
    open_session,
)

if TYPE_CHECKING:
    import datetime as dt

    from nurture.settings import Settings

__all__ = [
    "WRITTEN_TABLES",
    "JourneyInputs",
    "JourneysBenchmarkResult",
    "RotatingContent",
    "StatementCounter",
    "copy_database",
    "count_rows",
    "insert_rows_bare",
    "load_journey_inputs",
    "read_written_rows",
    "render_journeys_section",
    "run_journeys_benchmark",
    "sqlite_engine",
    "time_journeys_pass",
]

logger = logging.getLogger("benchmarks")

WRITTEN_TABLES = (
    CommunityMilestone.__tablename__,
    Journey.__tablename__,
    Enrollment.__tablename__,
    Message.__tablename__,
)
"""The tables the engine writes, in the order the baseline inserts them (foreign keys)."""


class RotatingContent:
    """A cheap deterministic ``pick_content``: the library's items, rotated by member id.

    Each member gets the published items in the library's key order, starting at a place that
    depends on its id, skipping the excluded keys and the kinds not asked for. No query, no
    vector: the figure measures the engine, not content ranking.

    Args:
        items: The items, as the JSON-ready dicts a message stores.
    """

    def __init__(self, items: Sequence[dict[str, Any]]) -> None:
        self.items = [dict(item) for item in items]

    @classmethod
    def from_database(cls, session: Session) -> RotatingContent:
        """The content items of the database, in key order."""
        rows = session.execute(
            select(
                ContentItem.key,
                ContentItem.title,
                ContentItem.url,
                ContentItem.kind,
                ContentItem.summary,
                ContentItem.language,
            ).order_by(ContentItem.key)
        ).tuples()
        return cls(
            [
                {
                    "key": key,
                    "title": title,
                    "url": url,
                    "kind": kind,
                    "summary": summary or "",
                    "language": language,
                    "reason": "",
                }
                for key, title, url, kind, summary, language in rows
            ]
        )

    def __call__(
        self,
        session: Session,
        member_id: int,
        count: int,
        kinds: list[str] | None,
        exclude_keys: frozenset[str],
    ) -> list[dict[str, Any]]:
        """Up to ``count`` items for the member (see :class:`nurture.journeys.PickContent`)."""
        picked: list[dict[str, Any]] = []
        n = len(self.items)
        for offset in range(n):
            item = self.items[(member_id * 7 + offset) % n]
            if (kinds and item["kind"] not in kinds) or item["key"] in exclude_keys:
                continue
            picked.append(dict(item))
            if len(picked) == count:
                break
        return picked


@dataclass(frozen=True)
class JourneyInputs:
    """What every pass of the engine gets, as the pipeline's journeys stage passes it.

    Attributes:
        definitions: The workspace's journeys (``load_journeys``).
        rules: The workspace's sending rules (``load_sending_rules``).
        pick: The content picker.
        chunk_size: Enrollments per batch (``NURTURE_CHUNK_SIZE``).
        suppression_salt: Salt of the suppression list.
    """

    definitions: Sequence[JourneyDefinition]
    rules: SendingRules
    pick: RotatingContent
    chunk_size: int
    suppression_salt: str


def load_journey_inputs(settings: Settings, database: Path) -> JourneyInputs:
    """Load the workspace's journeys and sending rules, and the picker of ``database``'s items."""
    engine = sqlite_engine(database)
    with open_session(engine) as session:
        pick = RotatingContent.from_database(session)
    engine.dispose()
    return JourneyInputs(
        definitions=load_journeys(settings.journeys_dir, settings.templates_dir),
        rules=load_sending_rules(settings.sending_rules_path),
        pick=pick,
        chunk_size=settings.chunk_size,
        suppression_salt=settings.suppression_salt.get_secret_value(),
    )


def sqlite_engine(path: Path) -> Engine:
    """An engine on the SQLite file ``path``, configured as nurture configures it (WAL...)."""
    return create_database_engine(f"sqlite:///{path}")


def copy_database(source: Path, target: Path) -> Path:
    """Copy the SQLite file ``source`` to ``target``, replacing it and its journal files.

    The copy is flushed to disk (``os.sync``) before this returns: otherwise the first commit
    of the timed run that follows, whose ``fsync`` makes the file system write out every dirty
    block of its journal transaction, would pay for writing the copy too.

    Raises:
        RuntimeError: ``source`` has a write-ahead log not checkpointed yet (an engine on it
            was not disposed), so its file alone is not the whole database.
    """
    wal = source.with_name(source.name + "-wal")
    if wal.exists() and wal.stat().st_size:
        raise RuntimeError(f"{source} has a write-ahead log: dispose its engine before copying")
    for suffix in ("", "-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(source, target)
    os.sync()
    return target


class StatementCounter:
    """Counts the SQL statements and commits of an engine (an executemany counts once)."""

    def __init__(self, engine: Engine) -> None:
        self.statements = 0
        self.commits = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _statement(self, *_: Any) -> None:
        self.statements += 1

    def _commit(self, *_: Any) -> None:
        self.commits += 1


def count_rows(engine: Engine) -> dict[str, int]:
    """Rows of every table of nurture's schema."""
    with engine.connect() as connection:
        return {
            name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in Base.metadata.tables.items()
        }


def read_written_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables the engine writes, as column values, in primary key order."""
    tables = Base.metadata.tables
    with engine.connect() as connection:
        return {
            name: [
                dict(row)
                for row in connection.execute(
                    select(tables[name]).order_by(*tables[name].primary_key.columns)
                ).mappings()
            ]
            for name in WRITTEN_TABLES
        }


def time_journeys_pass(
    database: Path, inputs: JourneyInputs, now: dt.datetime, *, count: bool = False
) -> tuple[float, JourneySummary, StatementCounter | None]:
    """Run one pass of the engine on ``database`` in a new session and commit.

    Args:
        database: A SQLite file, changed in place.
        inputs: The definitions, rules and picker.
        now: The time of the pass.
        count: Count the statements and commits (untimed runs only).

    Returns:
        The seconds of ``advance_journeys`` plus its commit, its summary, and the counter.
    """
    engine = sqlite_engine(database)
    counter = StatementCounter(engine) if count else None
    with open_session(engine) as session:
        session.execute(select(1))  # connect before timing
        start = time.perf_counter()
        summary = advance_journeys(
            session,
            inputs.definitions,
            now,
            inputs.pick,
            chunk_size=inputs.chunk_size,
            suppression_salt=inputs.suppression_salt,
            rules=inputs.rules,
        )
        session.commit()
        elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed, summary, counter


def insert_rows_bare(database: Path, rows: dict[str, list[dict[str, Any]]]) -> float:
    """The baseline: read the members, insert ``rows`` with bare ``insert()``, commit.

    Args:
        database: A SQLite file without those rows, changed in place.
        rows: Column values by table name (see :func:`read_written_rows`).

    Returns:
        The seconds of the members' query, the inserts and the commit.
    """
    engine = sqlite_engine(database)
    tables = Base.metadata.tables
    with open_session(engine) as session:
        session.execute(select(1))  # connect before timing
        start = time.perf_counter()
        session.execute(select(Member.__table__)).all()
        for name in WRITTEN_TABLES:
            if rows[name]:
                session.execute(insert(tables[name]), rows[name])
        session.commit()
        elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


@dataclass(frozen=True)
class JourneysBenchmarkResult:
    """Everything one run of the journeys benchmark measured.

    Attributes:
        members: Members in the demo community.
        seed: Seed of the demo community.
        repeats: Rounds measured.
        journeys: Journey definitions in force.
        chunk_size: Enrollments per batch.
        summary: What the engine's pass reported (the same in every round).
        rows: Rows the pass wrote, by table.
        statements: SQL statements of the pass (executemany once), counted in the untimed round.
        commits: Commits of the pass.
        baseline: The bare inserts of the same rows.
        engine: The engine's pass.
        queued_database: A copy of the database after the pass, its messages queued (the
            delivery figure's input); inside the caller's folder.
        warm_up_seconds: The untimed first round.
    """

    members: int
    seed: int
    repeats: int
    journeys: int
    chunk_size: int
    summary: JourneySummary
    rows: dict[str, int]
    statements: int
    commits: int
    baseline: Measurement
    engine: Measurement
    queued_database: Path
    warm_up_seconds: float


def run_journeys_benchmark(
    database: Path,
    work_dir: Path,
    settings: Settings,
    now: dt.datetime,
    *,
    members: int,
    seed: int,
    repeats: int = 3,
) -> JourneysBenchmarkResult:
    """Measure one pass of the engine against bare inserts of the rows it wrote.

    One untimed round runs first, on its own copy: it counts the statements, checks that the
    engine wrote no other table, keeps the database for the delivery figure, and runs both
    sides once (imports, ORM configuration). Every run gets a new engine on its copy, so each
    compiles its statements afresh, as a pipeline stage in a new process does. Each round then
    runs the engine on a fresh copy, reads back what it wrote, and inserts the same rows bare
    into another fresh copy.

    Args:
        database: The demo community's SQLite file (not changed; its engine disposed).
        work_dir: A folder for the copies.
        settings: Workspace (journeys, templates, sending rules), chunk size, salt.
        now: The time of the pass.
        members: Members in the demo community (for the report).
        seed: Seed of the demo community (for the report).
        repeats: Rounds to measure; the report gives medians.

    Returns:
        The measurements and what they were made on.

    Raises:
        ValueError: ``repeats`` is below 1.
        RuntimeError: The engine wrote tables the baseline does not insert, or two passes wrote
            different rows.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, found {repeats}")
    inputs = load_journey_inputs(settings, database)
    start = time.perf_counter()
    queued = copy_database(database, work_dir / "queued.db")
    source_engine = sqlite_engine(database)
    before = count_rows(source_engine)
    source_engine.dispose()
    _, summary, counter = time_journeys_pass(queued, inputs, now, count=True)
    assert counter is not None
    queued_engine = sqlite_engine(queued)
    after = count_rows(queued_engine)
    expected = read_written_rows(queued_engine)
    queued_engine.dispose()
    changed = {name for name in after if after[name] != before[name]}
    if changed - set(WRITTEN_TABLES):
        raise RuntimeError(
            f"the engine wrote rows in {sorted(changed - set(WRITTEN_TABLES))}, which the "
            f"baseline does not insert: the two sides would not do the same work"
        )
    insert_rows_bare(copy_database(database, work_dir / "bare.db"), expected)
    warm_up_seconds = time.perf_counter() - start
    logger.info("journeys: warm-up round (untimed) done; %s", summary)

    baseline: list[float] = []
    engine: list[float] = []
    for number in range(1, repeats + 1):
        run = copy_database(database, work_dir / "run.db")
        seconds, this, _ = time_journeys_pass(run, inputs, now)
        run_engine = sqlite_engine(run)
        written = read_written_rows(run_engine)
        run_engine.dispose()
        if this != summary or written != expected:
            raise RuntimeError("two passes of the engine at the same time wrote different rows")
        bare = copy_database(database, work_dir / "bare.db")
        bare_seconds = insert_rows_bare(bare, written)
        bare_engine = sqlite_engine(bare)
        if count_rows(bare_engine) != after:
            raise RuntimeError("the bare inserts did not leave the rows the engine left")
        bare_engine.dispose()
        engine.append(seconds)
        baseline.append(bare_seconds)
        logger.info(
            "journeys round %d/%d: engine %.2f s, bare inserts %.2f s",
            number,
            repeats,
            seconds,
            bare_seconds,
        )
    return JourneysBenchmarkResult(
        members=members,
        seed=seed,
        repeats=repeats,
        journeys=len(inputs.definitions),
        chunk_size=inputs.chunk_size,
        summary=summary,
        rows={name: len(expected[name]) for name in WRITTEN_TABLES},
        statements=counter.statements,
        commits=counter.commits,
        baseline=Measurement(
            "Bare `insert()` of the same rows + one read of the members (baseline)",
            tuple(baseline),
        ),
        engine=Measurement("`advance_journeys`, one pass, then the commit", tuple(engine)),
        queued_database=queued,
        warm_up_seconds=warm_up_seconds,
    )


def render_journeys_section(result: JourneysBenchmarkResult) -> tuple[list[str], list[str]]:
    """The Markdown of the journeys figure: what is measured, and the notes under its table.

    Returns:
        ``(description lines, result lines)``; the caller renders the table between them.
    """
    summary = result.summary
    rows = result.rows
    per_enrollment = result.engine.median / max(summary.enrolled, 1) * 1e6
    description = [
        f"One pass of the journey engine (`nurture.journeys.advance_journeys`, then the "
        f"commit) at a fixed time on the demo community (`generate_demo_community`, "
        f"{result.members} members, seed {result.seed}, prepared as for the profile figure: "
        f"no profiles and no segments yet, so conditions see no lifecycle stage and no "
        f"segment, and the digest's audience `lifecycle != 'dormant'` lets everyone in), "
        f"with the workspace's {result.journeys} journeys "
        f"(`content/journeys`) and sending rules (`content/sending.yaml`: message budget and "
        f"quiet hours), the suppression salt and {result.chunk_size} enrollments per batch, as "
        f"the pipeline's journeys stage runs it. Each round runs on a fresh copy of the "
        f"SQLite file (copied, not re-imported). Content is picked by a cheap deterministic "
        f"stand-in (`RotatingContent`: the library's items rotated by member id, no query, "
        f"no vector), so content ranking is **not** part of this figure (the ranking figure "
        f"measures it); the events of the `upcoming` slots are still read by the engine.",
        "",
        "The baseline is the floor of that work: the rows the engine wrote (`journeys`, "
        "`enrollments`, `messages`, and the `community_milestones` the milestone trigger "
        "records; read back after its run, in their final state) inserted "
        "with a bare `insert()` executemany into another fresh copy of the database, after one "
        "query reading the members, then the commit. The ratio is what deciding those rows "
        "costs on top of writing them: triggers, consent, suppression, audiences, goals and "
        "branches, the steps and the sending rules, and the queries behind them.",
        "",
        f"One untimed round runs first (it also checks that the engine writes no other table). "
        f"Each figure is the median of {result.repeats} rounds; a round runs the engine then "
        f"the baseline, back to back, and checks that the pass wrote the same rows as the "
        f"first and that the baseline left the same row counts.",
    ]
    notes = [
        f"- Work done by the pass: {summary.enrolled:,} enrollments created and "
        f"{summary.advanced:,} advanced ({summary.completed:,} completed, "
        f"{summary.goal_reached:,} left on reaching their goal, {summary.exited:,} exited); "
        f"**{summary.messages_queued:,} messages queued**; held back by the sending rules: "
        f"{summary.quiet_deferred:,} for quiet hours, {summary.budget_deferred:,} waiting for "
        f"budget, {summary.budget_skipped:,} skipped over budget (a first pass on a fresh "
        f"database: nobody has spent any budget yet).",
        f"- Rows written: "
        f"{', '.join(f'`{name}` {count:,}' for name, count in rows.items())}; "
        f"{result.statements:,} SQL statements (an executemany counts once) and "
        f"{result.commits} commit(s) for the pass.",
        f"- {per_enrollment:.0f} µs per enrollment created.",
        f"- Not timed: copying the database, reading back the rows, the warm-up round "
        f"({result.warm_up_seconds:.1f} s).",
    ]
    return description, notes
