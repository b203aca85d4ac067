"""The pipeline stages on a :class:`~nurture.settings.Settings`: what the CLI and the flows call.

Each stage opens its own session on the configured database, commits what it did and returns a
summary, so that a stage can run as one Prefect task given only plain values (settings overrides,
member or message ids, a time). :func:`run_cycle` runs one full cycle in this process, without
Prefect: ``nurture run --no-prefect`` and the tests use it; the flows in ``flows/`` call the same
stages, one task per stage or per chunk of members.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import Engine, func, select

from nurture import operations, rights
from nurture.chunks import chunked
from nurture.delivery import (
    DeliverySummary,
    TemplateRenderer,
    deliver_messages,
    due_message_ids,
    mailer_for,
    write_outbox_index,
)
from nurture.delivery.worker import RecoverySummary, RetryPolicy, recover_stale_messages
from nurture.embedding import Embedder, load_embedder
from nurture.errors import ConfigurationError
from nurture.ingest import ImportSummary, import_activity, import_answers, import_members
from nurture.journeys import (
    JourneyDefinition,
    JourneySummary,
    advance_journeys,
    load_journeys,
    load_sending_rules,
)
from nurture.profiling import ProfileSummary, build_profiles
from nurture.recommend import (
    MatchSummary,
    RankingWeights,
    embed_content_items,
    recommend_for_members,
    start_match_run,
)
from nurture.segmentation import SegmentationSummary, load_segment_rules, segment_members
from nurture.settings import Settings
from nurture.storage import Member, create_database_engine, migrate_database, session_scope
from nurture.workspace import (
    ContentItemSpec,
    ContentSyncSummary,
    Questionnaire,
    load_content_library,
    load_questionnaire,
    sync_content_items,
)

__all__ = [
    "IMPORT_ORDER",
    "CycleReport",
    "ImportKind",
    "PendingImport",
    "WorkspaceCheck",
    "check_workspace",
    "chunked",
    "count_members",
    "deliver_chunk",
    "delivery_report",
    "due_messages",
    "engine_for",
    "erase_member",
    "export_member",
    "finish_delivery",
    "import_file",
    "imports_dir",
    "journey_funnel",
    "match_chunk",
    "match_coverage",
    "match_members",
    "member_ids",
    "move_imported",
    "pending_imports",
    "prepare_database",
    "profile_chunk",
    "profile_members",
    "ranking_weights",
    "recover_deliveries",
    "resolve_now",
    "run_cycle",
    "run_delivery",
    "run_journeys",
    "run_nightly",
    "segment",
    "segment_table",
    "settings_from",
    "start_matching",
    "status_report",
    "sync_workspace",
    "utc_now",
]

logger = logging.getLogger(__name__)

ImportKind = Literal["members", "answers", "activity"]


def utc_now() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def resolve_now(now: dt.datetime | None) -> dt.datetime:
    """``now`` as a timezone-aware time (a naive one is taken as UTC); the current time if None."""
    if now is None:
        return utc_now()
    return now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)


def settings_from(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the environment (``NURTURE_*``), with ``overrides`` on top.

    Raises:
        ConfigurationError: A setting is invalid; the message names each one.
    """
    try:
        return Settings(**dict(overrides or {}))
    except ValidationError as error:
        problems = "; ".join(
            f"NURTURE_{'_'.join(str(part) for part in problem['loc']).upper()}: {problem['msg']}"
            for problem in error.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from error


# --- database -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    return create_database_engine(url, pool_pre_ping=True)


def engine_for(settings: Settings) -> Engine:
    """The engine of the configured database, created once per process and URL."""
    return _engine(settings.resolved_database_url)


@functools.lru_cache(maxsize=8)
def _migrated(url: str) -> bool:
    migrate_database(_engine(url))
    return True


def prepare_database(settings: Settings) -> Engine:
    """Create the data folder and bring the database schema up to date; return the engine."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _migrated(settings.resolved_database_url)
    return engine_for(settings)


def _embedder(settings: Settings) -> Embedder:
    return load_embedder(settings.embedding_model, settings.embedding_batch_size)


# --- workspace ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkspaceCheck:
    """The marketer files of a workspace, each loaded and validated.

    Attributes:
        questionnaire: The questionnaire.
        content_items: The content items of the library.
        journeys: The journey definitions.
    """

    questionnaire: Questionnaire
    content_items: list[ContentItemSpec]
    journeys: list[JourneyDefinition]


def check_workspace(settings: Settings) -> WorkspaceCheck:
    """Load and validate every marketer file of the workspace; raise on the first bad file.

    Journeys are checked against the rest of the workspace: the templates they name, the rule
    segments of ``segments.yaml`` and the question keys of the questionnaire. The sending rules
    (``sending.yaml``, optional) are checked too. Every email template is rendered in every
    language against sample data, with the journeys' subject lines (``validate_templates``).

    Raises:
        WorkspaceFileError: A file is invalid; the error lists every problem with file and line.
    """
    questionnaire = load_questionnaire(settings.questionnaire_path)
    question_keys = [question.key for question in questionnaire.questions]
    specs = load_content_library(settings.content_dir)
    rules = load_segment_rules(settings.segments_path, question_keys=question_keys)
    load_sending_rules(settings.sending_rules_path)
    journeys = load_journeys(
        settings.journeys_dir,
        settings.templates_dir,
        segment_keys=[rule.key for rule in rules],
        question_keys=question_keys,
    )
    from nurture.delivery.rendering import (
        TemplateValidationError,
        journey_subjects,
        validate_templates,
    )

    template_problems = validate_templates(
        settings.templates_dir,
        community_name=settings.community_name,
        public_base_url=settings.public_base_url,
        shared_context={"questionnaire_url": settings.questionnaire_url}
        if settings.questionnaire_url
        else None,
        subjects=journey_subjects(journeys),
    )
    if template_problems:
        raise TemplateValidationError(template_problems)
    return WorkspaceCheck(questionnaire, specs, journeys)


def sync_workspace(settings: Settings, now: dt.datetime | None = None) -> ContentSyncSummary:
    """Bring the content library into the database and embed the items not embedded yet."""
    specs = load_content_library(settings.content_dir)
    with session_scope(prepare_database(settings)) as session:
        summary = sync_content_items(session, specs, now=now)
        embedded = embed_content_items(session, _embedder(settings))
    logger.info("content library synced: %s; %d items embedded", summary, embedded)
    return summary


# --- import ---------------------------------------------------------------------------------


def import_file(
    settings: Settings,
    kind: ImportKind,
    path: Path,
    rejects_path: Path | None = None,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
) -> ImportSummary:
    """Import one file of members, questionnaire answers or activity events.

    Valid records are stored in batches; refused ones go to ``rejects_path`` (default: next to
    the data, ``data_dir/rejects/<file name>.rejects.csv``). The CSV delimiter and the file's
    encoding are found from the file unless given.
    """
    if rejects_path is None:
        rejects_path = settings.data_dir / "rejects" / f"{path.name}.rejects.csv"
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    with session_scope(prepare_database(settings)) as session:
        if kind == "members":
            return import_members(
                session, path, rejects_path, delimiter=delimiter, encoding=encoding
            )
        if kind == "answers":
            questionnaire = load_questionnaire(settings.questionnaire_path)
            return import_answers(
                session, path, questionnaire, rejects_path, delimiter=delimiter, encoding=encoding
            )
        return import_activity(session, path, rejects_path, delimiter=delimiter, encoding=encoding)


# --- nightly stages -------------------------------------------------------------------------


def member_ids(settings: Settings) -> list[int]:
    """Ids of every member, in id order."""
    with session_scope(prepare_database(settings)) as session:
        return list(session.scalars(select(Member.id).order_by(Member.id)))


def profile_chunk(settings: Settings, ids: Sequence[int], now: dt.datetime) -> ProfileSummary:
    """Build and store the profiles of the members ``ids``."""
    questionnaire = load_questionnaire(settings.questionnaire_path)
    with session_scope(engine_for(settings)) as session:
        return build_profiles(
            session, _embedder(settings), questionnaire, now, ids, chunk_size=settings.chunk_size
        )


def segment(settings: Settings, now: dt.datetime) -> SegmentationSummary:
    """Cluster every profiled member into labelled segments, then evaluate the rule segments."""
    questionnaire = load_questionnaire(settings.questionnaire_path)
    rules = load_segment_rules(
        settings.segments_path, question_keys=[q.key for q in questionnaire.questions]
    )
    with session_scope(engine_for(settings)) as session:
        return segment_members(
            session,
            questionnaire=questionnaire,
            now=now,
            n_segments=settings.n_segments,
            min_segments=settings.min_segments,
            max_segments=settings.max_segments,
            seed=settings.random_seed,
            block_weights=settings.segment_block_weights,
            mini_batch_threshold=settings.segment_mini_batch_threshold,
            sample_size=settings.segment_sample_size,
            move_after=dt.timedelta(days=settings.segment_move_after_days),
            rules=rules,
        )


def ranking_weights(settings: Settings) -> RankingWeights:
    """The ranking weights in force: the defaults, with the settings' on top."""
    tuning = {
        "interest_half_life_days": settings.interest_half_life_days,
        "mmr_lambda": settings.mmr_lambda,
    }
    return RankingWeights(
        **settings.ranking_weights,
        **{name: value for name, value in tuning.items() if value is not None},
    )


def start_matching(settings: Settings) -> int:
    """Record a new match run and return its id, for :func:`match_chunk`."""
    with session_scope(engine_for(settings)) as session:
        return start_match_run(
            session,
            _embedder(settings),
            ranking_weights(settings),
            settings.recommendations_per_member,
            kinds=settings.recommendation_kinds,
        )


def match_chunk(
    settings: Settings, run_id: int, ids: Sequence[int], now: dt.datetime
) -> MatchSummary:
    """Rank the content library for the members ``ids`` and store their recommendations."""
    with session_scope(engine_for(settings)) as session:
        return recommend_for_members(
            session,
            _embedder(settings),
            ids,
            now,
            settings.recommendations_per_member,
            ranking_weights(settings),
            run_id=run_id,
            kinds=settings.recommendation_kinds,
        )


# --- journeys and delivery ------------------------------------------------------------------


def run_journeys(settings: Settings, now: dt.datetime) -> JourneySummary:
    """Enrol members in the workspace's journeys and queue the messages that are due."""
    definitions = load_journeys(settings.journeys_dir, settings.templates_dir)
    rules = load_sending_rules(settings.sending_rules_path)
    with session_scope(prepare_database(settings)) as session:
        return advance_journeys(
            session,
            definitions,
            now,
            chunk_size=settings.chunk_size,
            suppression_salt=settings.suppression_salt.get_secret_value(),
            rules=rules,
        )


def recover_deliveries(settings: Settings, now: dt.datetime) -> RecoverySummary:
    """Settle the messages an interrupted run left in ``sending``, never sending them again.

    Those the provider reported on become ``sent``; the others ``unknown``, for an operator.
    """
    with session_scope(prepare_database(settings)) as session:
        return recover_stale_messages(
            session, now, dt.timedelta(minutes=settings.sending_stale_after_minutes)
        )


def due_messages(settings: Settings, now: dt.datetime) -> list[int]:
    """Ids of the queued messages due at ``now``, oldest first."""
    with session_scope(engine_for(settings)) as session:
        return due_message_ids(session, now)


@functools.lru_cache(maxsize=8)
def _renderer(
    templates_dir: Path,
    community_name: str,
    public_base_url: str,
    secret: str,
    questionnaire_url: str | None,
) -> TemplateRenderer:
    return TemplateRenderer(
        templates_dir,
        community_name=community_name,
        public_base_url=public_base_url,
        unsubscribe_secret=secret,
        shared_context={"questionnaire_url": questionnaire_url} if questionnaire_url else None,
    )


def deliver_chunk(settings: Settings, ids: Sequence[int], now: dt.datetime) -> DeliverySummary:
    """Render and send the messages ``ids`` through the configured mail backend, exactly once.

    ``send_concurrency`` emails go out at a time; transient errors are retried in later runs
    with backoff (``max_send_attempts``, ``retry_base_seconds``, ``retry_max_seconds``).
    """
    renderer = _renderer(
        settings.templates_dir.resolve(),
        settings.community_name,
        settings.public_base_url,
        settings.unsubscribe_secret.get_secret_value(),
        settings.questionnaire_url,
    )
    mailer = mailer_for(settings)
    with session_scope(engine_for(settings)) as session:
        return deliver_messages(
            session,
            mailer,
            renderer,
            ids,
            now,
            sender_email=settings.sender_email,
            sender_name=settings.sender_name,
            suppression_salt=settings.suppression_salt.get_secret_value(),
            concurrency=settings.send_concurrency,
            retry=RetryPolicy(
                max_attempts=settings.max_send_attempts,
                base_seconds=settings.retry_base_seconds,
                max_seconds=settings.retry_max_seconds,
                ambiguous_seconds=settings.sending_stale_after_minutes * 60.0,
            ),
            clock=utc_now,
        )


def finish_delivery(settings: Settings) -> Path:
    """Refresh the outbox's ``index.html``; return its path."""
    return write_outbox_index(settings.resolved_outbox_dir)


# --- members' rights ------------------------------------------------------------------------


def export_member(settings: Settings, email: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """Everything the database holds about the member with address ``email``, JSON-ready.

    Raises:
        MemberNotFoundError: No member has that address.
    """
    with session_scope(prepare_database(settings)) as session:
        return rights.export_member(
            session, email, salt=settings.suppression_salt.get_secret_value(), now=now
        )


def erase_member(
    settings: Settings, email: str, now: dt.datetime | None = None
) -> rights.ErasureSummary:
    """Erase the member with address ``email`` and suppress the address for good.

    The database rows go first, in one transaction; then the outbox copies of their emails
    (counted as ``outbox_files``). A repeated erasure deletes nothing and finishes the job if
    an earlier one stopped between the two.

    Raises:
        MemberNotFoundError: No member has that address and it is not on the suppression list.
    """
    with session_scope(prepare_database(settings)) as session:
        summary = rights.erase_member(
            session, email, salt=settings.suppression_salt.get_secret_value(), now=now
        )
    files = rights.erase_from_outbox(settings.resolved_outbox_dir, email)
    if files:
        logger.info("erased %d outbox emails", files)
    return dataclasses.replace(summary, deleted={**summary.deleted, "outbox_files": files})


# --- one cycle, in process ------------------------------------------------------------------


@dataclass
class CycleReport:
    """What one full cycle did, stage by stage."""

    content: ContentSyncSummary | None = None
    members: int = 0
    profiled: int = 0
    texts_embedded: int = 0
    segmentation: SegmentationSummary | None = None
    recommendations: int = 0
    journeys: JourneySummary | None = None
    delivery: DeliverySummary = field(default_factory=DeliverySummary)
    outbox_index: Path | None = None


def run_nightly(settings: Settings, now: dt.datetime) -> CycleReport:
    """Sync content, then profile, segment and match every member, in chunks, in process."""
    report = CycleReport(content=sync_workspace(settings, now))
    ids = member_ids(settings)
    report.members = len(ids)
    report.profiled, report.texts_embedded = profile_members(settings, ids, now)
    report.segmentation = segment(settings, now)
    report.recommendations = match_members(settings, ids, now)[1]
    return report


def profile_members(settings: Settings, ids: Sequence[int], now: dt.datetime) -> tuple[int, int]:
    """Profile the members ``ids`` chunk by chunk; return (members profiled, texts embedded)."""
    profiled = embedded = 0
    for chunk in chunked(ids, settings.chunk_size):
        summary = profile_chunk(settings, chunk, now)
        profiled += summary.profiled
        embedded += summary.texts_embedded
    return profiled, embedded


def match_members(settings: Settings, ids: Sequence[int], now: dt.datetime) -> tuple[int, int]:
    """Match the members ``ids`` in one new match run; return (run id, recommendations)."""
    run_id = start_matching(settings)
    total = sum(
        match_chunk(settings, run_id, chunk, now).recommendations
        for chunk in chunked(ids, settings.chunk_size)
    )
    return run_id, total


def run_delivery(
    settings: Settings, now: dt.datetime, report: CycleReport | None = None
) -> CycleReport:
    """Settle interrupted sends, advance journeys, then send every due message, in chunks."""
    report = report or CycleReport()
    recover_deliveries(settings, now)  # logs what it settled
    report.journeys = run_journeys(settings, now)
    for chunk in chunked(due_messages(settings, now), settings.chunk_size):
        report.delivery += deliver_chunk(settings, chunk, now)
    report.outbox_index = finish_delivery(settings)
    return report


def run_cycle(settings: Settings, now: dt.datetime | None = None) -> CycleReport:
    """One full cycle without Prefect: profile, segment, match, advance journeys, deliver."""
    now = now or utc_now()
    return run_delivery(settings, now, run_nightly(settings, now))


def count_members(settings: Settings) -> int:
    """How many members the database holds."""
    with session_scope(prepare_database(settings)) as session:
        return session.scalar(select(func.count()).select_from(Member)) or 0


# --- operations -----------------------------------------------------------------------------
# What the flows' artifacts and ``nurture status`` show; every stage only reads the database.


def journey_funnel(settings: Settings) -> list[operations.FunnelRow]:
    """Per journey and send step: entered, sent, delivered, opened, clicked, goal reached."""
    with session_scope(prepare_database(settings)) as session:
        return operations.journey_funnel(session)


def match_coverage(
    settings: Settings, now: dt.datetime | None = None
) -> operations.CoverageSummary:
    """How many members have recommendations and how much of the live library they cover."""
    with session_scope(prepare_database(settings)) as session:
        return operations.match_coverage(session, resolve_now(now))


def delivery_report(
    settings: Settings, since: dt.datetime | None = None, now: dt.datetime | None = None
) -> operations.DeliveryReport:
    """Messages by status and failures by reason (of those queued since ``since``), the queue."""
    with session_scope(prepare_database(settings)) as session:
        return operations.delivery_report(
            session, resolve_now(since) if since is not None else None, now=resolve_now(now)
        )


def segment_table(
    settings: Settings, now: dt.datetime | None = None
) -> list[operations.SegmentRow]:
    """One row per active segment: label, kind, size, share, top traits and words."""
    path = settings.questionnaire_path
    questionnaire = load_questionnaire(path) if path.is_file() else None
    with session_scope(prepare_database(settings)) as session:
        return operations.segment_table(session, resolve_now(now), questionnaire=questionnaire)


def status_report(
    settings: Settings,
    flow_runs: Sequence[operations.FlowRunSummary | Mapping[str, Any]] | None = None,
    now: dt.datetime | None = None,
    condition_errors: int = 0,
) -> operations.StatusReport:
    """Recent flow runs, messages by status, suppressions and what an operator should look at.

    Args:
        settings: The settings.
        flow_runs: The recent runs of the flows (summaries, or mappings of the same fields:
            ``flow``, ``name``, ``state_type``, ``state_name``, ``start_time``, ``end_time``,
            ``message``); None when unknown.
        now: The time of the report (default: now).
        condition_errors: Journey conditions that failed to evaluate in the last deliver run
            (``JourneySummary.condition_errors``), when the caller knows.
    """
    with session_scope(prepare_database(settings)) as session:
        return operations.status_report(
            session, resolve_now(now), flow_runs=flow_runs, condition_errors=condition_errors
        )


IMPORT_ORDER: tuple[ImportKind, ...] = ("members", "answers", "activity")
"""Kinds of import file, in the order they are imported: answers and events need members."""

_IMPORT_FILE = re.compile(r"^(members|answers|activity)\b.*\.(csv|jsonl)$", re.IGNORECASE)


# --- pending import files: the nightly flow's imports folder ------------------------------


@dataclasses.dataclass(frozen=True)
class PendingImport:
    """An import file waiting in the imports folder.

    Attributes:
        kind: What the file holds (from its name: ``members*.csv``, ``answers*.jsonl``...).
        path: The file.
    """

    kind: ImportKind
    path: Path


def imports_dir(settings: Settings) -> Path:
    """The folder the nightly flow imports files from: ``<data_dir>/imports``."""
    return settings.data_dir / "imports"


def pending_imports(folder: Path) -> list[PendingImport]:
    """The import files waiting in ``folder``: members first, then answers, then activity.

    A file's kind is the start of its name (``members``, ``answers`` or ``activity``, then
    anything, ending in ``.csv`` or ``.jsonl``); within a kind, files go in name order. Other
    files are left alone.
    """
    if not folder.is_dir():
        return []
    found: list[PendingImport] = []
    for path in sorted(folder.iterdir()):
        match = _IMPORT_FILE.match(path.name)
        if path.is_file() and match:
            kind: Literal["members", "answers", "activity"] = match.group(1).lower()  # type: ignore[assignment]
            found.append(PendingImport(kind, path))
    return sorted(found, key=lambda pending: IMPORT_ORDER.index(pending.kind))


def move_imported(path: Path, outcome: Literal["done", "failed"], now: dt.datetime) -> Path:
    """Move an import file to ``done/`` or ``failed/`` beside it, stamped with ``now``.

    Returns:
        Where the file went.
    """
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.parent / outcome / f"{stamp}-{path.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    return path.replace(target)
