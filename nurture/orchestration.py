"""How the stage lists run: in this process, or handed to an orchestrator found by name.

:func:`run_stage_list` runs a list of :mod:`nurture.stages` in this process, stage after
stage, chunk after chunk (``nurture run --no-prefect``, the tests). Any other way of running
them is an :class:`Orchestrator`, looked up by name among the ``nurture.orchestrators`` entry
points: ``flows/`` registers ``prefect``, which runs the same lists as Prefect flows. nurture
itself never imports an orchestrator's code.

Either way, a run returns the same plain summary: ``{stage name: what it did}``, where what a
stage did is JSON-ready (counts, ids, paths as text). :func:`plain`, :func:`chunk_batches` and
:func:`combine_chunks` are the rules both follow; :class:`CycleReport` reads a summary back
as typed values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import time
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from nurture.chunks import chunked, map_at_once
from nurture.delivery import DeliverySummary
from nurture.errors import BackfillRefusedError, ConfigurationError
from nurture.journeys import JourneySummary
from nurture.runtime import Runtime, resolve_now
from nurture.segmentation import SegmentationSummary
from nurture.settings import Settings
from nurture.stages import STAGE_LISTS, Stage, StageList
from nurture.storage.database_errors import driver_reason, is_transient
from nurture.workspace import ContentSyncSummary

__all__ = [
    "CYCLE",
    "IN_PROCESS",
    "ORCHESTRATOR_ENTRY_POINTS",
    "TRANSIENT_RETRIES",
    "TRANSIENT_RETRY_DELAY_SECONDS",
    "CycleReport",
    "InProcessOrchestrator",
    "Orchestrator",
    "add_up",
    "chunk_batches",
    "combine_chunks",
    "load_orchestrator",
    "plain",
    "run_cycle",
    "run_stage",
    "run_stage_list",
    "worth_retrying",
]

logger = logging.getLogger(__name__)

CYCLE: tuple[str, ...] = ("nightly", "deliver")
"""The stage lists of one full cycle, in order."""

TRANSIENT_RETRIES = 2
"""Times :func:`run_stage` runs a chunk (or a stage of one call) again after a transient
database error (a deadlock, a serialization failure, a lost connection); after the last, the
error ends the stage."""
TRANSIENT_RETRY_DELAY_SECONDS = 1.0
"""Wait before the first run again; each next one waits as much more."""


def worth_retrying(error: BaseException | None) -> bool:
    """Whether a stage that failed with ``error`` may succeed if run again.

    Every stage is safe to run again (see :mod:`nurture.stages`), but a refused backfill would
    only be refused again until someone allows it.
    """
    return not isinstance(error, BackfillRefusedError)


IN_PROCESS = "in-process"
"""The name of the orchestrator that runs the lists in this process."""

ORCHESTRATOR_ENTRY_POINTS = "nurture.orchestrators"
"""The entry point group naming orchestrators: ``name = "module:factory"``."""

T = TypeVar("T")


# --- plain summaries ------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data.

    Dataclasses and mappings become dicts, sequences lists, paths text, times ISO 8601 text,
    enumerations their values and numpy scalars Python numbers.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {item.name: plain(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        return value.item()
    return value


def add_up(summaries: Sequence[Mapping[str, Any]], keep: Collection[str] = ()) -> dict[str, Any]:
    """One summary for several chunks: counts added up (mappings of counts key by key).

    Fields in ``keep``, and fields that are not counts (text, flags), are taken from the first
    chunk: they are the same in every chunk.
    """
    total: dict[str, Any] = {}
    for summary in summaries:
        for key, value in summary.items():
            if key not in total:
                total[key] = dict(value) if isinstance(value, Mapping) else value
            elif key in keep:
                continue
            elif _is_count(value):
                total[key] += value
            elif isinstance(value, Mapping) and all(_is_count(v) for v in value.values()):
                for name, count in value.items():
                    total[key][name] = total[key].get(name, 0) + count
    return total


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def chunk_batches(stage: Stage, items: Sequence[T], settings: Settings) -> list[list[T]]:
    """The items of each call of a fanned-out stage: ``chunk_size`` ids, or one file each."""
    if stage.over is None:
        raise ValueError(f"stage {stage.name} does not fan out")
    return list(chunked(items, settings.chunk_size if stage.over.chunked else 1))


def combine_chunks(
    stage: Stage, started: Mapping[str, Any], items: Sequence[Any], summaries: Sequence[Any]
) -> Any:
    """The summary of a fanned-out stage from the plain summaries of its calls.

    Rows (lists) are joined; counts are added up, with what ``start`` gave, how many items
    were ``listed`` and how many ``chunks`` ran.
    """
    if isinstance(stage.empty, list):
        return [row for summary in summaries for row in summary]
    total = add_up(summaries, stage.keep) if summaries else plain(stage.empty)
    return {**total, **started, "listed": len(items), "chunks": len(summaries)}


# --- in this process ------------------------------------------------------------------------


def run_stage(
    runtime: Runtime,
    stage: Stage,
    now: dt.datetime,
    listed: dict[str, list[Any]] | None = None,
) -> Any:
    """Run one stage in this process, chunk by chunk; return its plain summary.

    The chunks of a fanout that may run in any order run ``runtime.chunk_threads`` at a time.
    A call (a chunk, or the stage's one call) that fails on a transient database error
    (``is_transient``: PostgreSQL aborted its transaction for another's sake, or the connection
    was lost) runs again, up to :data:`TRANSIENT_RETRIES` times, as a flow's task would; any other
    error ends the stage at once.

    Args:
        runtime: The runtime.
        stage: The stage.
        now: The time the stage acts at.
        listed: Items already listed in this run, by fanout name (filled as they are): the
            stages of one run over the members share one listing, as in a flow.
    """
    progress = runtime.progress
    if stage.over is None:
        with progress.task(stage.name, unit=stage.unit):
            summary = _retried(stage.name, "the stage", lambda: plain(stage.run(runtime, now)))
        logger.info("%s", stage.describe(summary))
        return summary
    listed = {} if listed is None else listed
    if stage.over.name not in listed:
        listed[stage.over.name] = stage.over.list_items(runtime, now)
        logger.info("%s", stage.over.says.format(count=len(listed[stage.over.name])))
    items = listed[stage.over.name]
    started = plain(stage.start(runtime, now)) if stage.start is not None else {}
    summaries = []
    batches = chunk_batches(stage, items, runtime.settings)
    threads = 1 if stage.over.in_order else runtime.chunk_threads
    listing = stage.over.name

    def run_chunk(batch: list[Any]) -> Any:
        return _retried(
            stage.name,
            f"a chunk of {len(batch)} {listing}",
            lambda: plain(stage.run(runtime, batch, now, **started)),
        )

    with progress.task(stage.name, len(items), stage.over.name) as watched:
        for batch, summary in zip(batches, map_at_once(run_chunk, batches, threads), strict=True):
            summaries.append(summary)
            logger.info("%s", stage.describe(summary))
            watched.advance(len(batch))
    return combine_chunks(stage, started, items, summaries)


def _retried(stage: str, what: str, call: Callable[[], T]) -> T:
    """``call()``, run again after a transient database error (:data:`TRANSIENT_RETRIES` at most).

    Args:
        stage: The stage's name, for the log.
        what: What the call works on, for the log (``a chunk of 500 members``).
        call: The work; safe to run again (every stage is, see :mod:`nurture.stages`).
    """
    attempt = 0
    while True:
        try:
            return call()
        except Exception as error:
            if attempt == TRANSIENT_RETRIES or not is_transient(error):
                raise
            attempt += 1
            delay = TRANSIENT_RETRY_DELAY_SECONDS * attempt
            logger.warning(
                "%s: %s failed on the database (%s); running it again in %.0f s (%s of %s)",
                stage,
                what,
                driver_reason(error),
                delay,
                attempt,
                TRANSIENT_RETRIES,
            )
            time.sleep(delay)


def run_stage_list(runtime: Runtime, stages: StageList, now: dt.datetime) -> dict[str, Any]:
    """Run every stage of a list in this process, in order; return ``{stage name: summary}``."""
    listed: dict[str, list[Any]] = {}
    return {stage.name: run_stage(runtime, stage, now, listed) for stage in stages}


@dataclass(frozen=True)
class CycleReport:
    """What a run of stage lists did, read back as typed values from its plain summary.

    Attributes:
        summaries: ``{list name: {stage name: plain summary}}``, as an orchestrator returns it.
    """

    summaries: Mapping[str, Mapping[str, Any]]

    def _stage(self, run: str, stage: str) -> Any:
        return self.summaries.get(run, {}).get(stage)

    @property
    def imports(self) -> list[dict[str, Any]]:
        """One row per file imported from the imports folder."""
        return list(self._stage("nightly", "imports") or [])

    @property
    def content(self) -> ContentSyncSummary | None:
        """What the content sync did."""
        return _typed(ContentSyncSummary, self._stage("nightly", "content"))

    @property
    def members(self) -> int:
        """Members profiled and matched (every member)."""
        return int((self._stage("nightly", "profile") or {}).get("listed", 0))

    @property
    def profiled(self) -> int:
        """Profiles written."""
        return int((self._stage("nightly", "profile") or {}).get("profiled", 0))

    @property
    def texts_embedded(self) -> int:
        """Texts sent to the embedding model (cache misses)."""
        return int((self._stage("nightly", "profile") or {}).get("texts_embedded", 0))

    @property
    def segmentation(self) -> SegmentationSummary | None:
        """What segmentation did."""
        return _typed(SegmentationSummary, self._stage("nightly", "segment"))

    @property
    def recommendations(self) -> int:
        """Recommendations written by the match run."""
        return int((self._stage("nightly", "match") or {}).get("recommendations", 0))

    @property
    def journeys(self) -> JourneySummary | None:
        """What advancing the journeys did."""
        return _typed(JourneySummary, self._stage("deliver", "journeys"))

    @property
    def delivery(self) -> DeliverySummary:
        """What sending did (zeros when nothing was sent)."""
        return _typed(DeliverySummary, self._stage("deliver", "send")) or DeliverySummary()

    @property
    def outbox_index(self) -> Path | None:
        """The outbox's index page, when the outbox backend wrote one."""
        found = self._stage("deliver", "outbox_index")
        return Path(found) if found else None


def _typed(kind: type[T], summary: Mapping[str, Any] | None) -> T | None:
    if summary is None:
        return None
    names = {item.name for item in dataclasses.fields(kind)}  # type: ignore[arg-type]
    return kind(**{key: value for key, value in summary.items() if key in names})


def run_cycle(
    runtime: Runtime, now: dt.datetime | None = None, lists: Sequence[str] = CYCLE
) -> CycleReport:
    """Run stage lists in this process (default: nightly, then deliver) at ``now``."""
    return CycleReport(InProcessOrchestrator().run(runtime, lists, resolve_now(now)))


# --- orchestrators --------------------------------------------------------------------------


@runtime_checkable
class Orchestrator(Protocol):
    """Something that runs stage lists: in this process, or as the flows of an orchestrator."""

    def run(
        self, runtime: Runtime, lists: Sequence[str], now: dt.datetime
    ) -> dict[str, dict[str, Any]]:
        """Run the stage lists named ``lists`` (of :data:`nurture.stages.STAGE_LISTS`) in order.

        An orchestrator that runs them elsewhere uses only ``runtime.settings``: the workspace
        and data folders, and the ``NURTURE_*`` environment of where it runs them.

        Returns:
            ``{list name: {stage name: plain summary}}``.
        """
        ...


class InProcessOrchestrator:
    """Runs the stage lists in this process with the caller's runtime."""

    def run(
        self, runtime: Runtime, lists: Sequence[str], now: dt.datetime
    ) -> dict[str, dict[str, Any]]:
        """Run the stage lists named ``lists`` in order, in this process."""
        return {name: run_stage_list(runtime, STAGE_LISTS[name], now) for name in lists}


def load_orchestrator(name: str) -> Orchestrator:
    """The orchestrator called ``name``: ``in-process``, or a ``nurture.orchestrators`` entry point.

    An entry point names a factory (``"package.module:Factory"``) called with no argument. In a
    source checkout, the entry points of its ``pyproject.toml`` come first: an editable install
    keeps the entry points it was installed with, which may be older.

    Raises:
        ConfigurationError: No orchestrator has that name, or its package cannot be imported.
    """
    if name == IN_PROCESS:
        return InProcessOrchestrator()
    found = {entry.name: entry for entry in entry_points(group=ORCHESTRATOR_ENTRY_POINTS)}
    found.update({entry.name: entry for entry in _source_entry_points()})
    if name not in found:
        known = ", ".join(sorted({IN_PROCESS, *found}))
        raise ConfigurationError(f"no orchestrator called {name!r}; known: {known}")
    try:
        factory = found[name].load()
    except ImportError as error:
        raise ConfigurationError(
            f"the {name} orchestrator ({found[name].value}) cannot be imported: {error}"
        ) from error
    orchestrator = factory()
    if not isinstance(orchestrator, Orchestrator):
        raise ConfigurationError(f"{found[name].value} is not an orchestrator (no run method)")
    return orchestrator


def _source_entry_points() -> list[EntryPoint]:
    """The orchestrators of the ``pyproject.toml`` of the source checkout nurture runs from."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        return []
    project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    if project.get("name") != "nurture":
        return []
    declared = project.get("entry-points", {}).get(ORCHESTRATOR_ENTRY_POINTS, {})
    return [
        EntryPoint(name=name, value=value, group=ORCHESTRATOR_ENTRY_POINTS)
        for name, value in declared.items()
    ]
