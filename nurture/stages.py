"""The stages of nurture, declared once: what the nightly and deliver runs do, in order.

Each stage is a function of this module on a :class:`~nurture.runtime.Runtime`: it opens its
own session, commits what it did and returns a summary. A stage may fan out: over the members
or the due messages, one call per chunk of ids (``chunk_size``), or over the files waiting in
the imports folder, one call per file, in order. :data:`NIGHTLY` and :data:`DELIVER` list the
stages of each run; :mod:`nurture.orchestration` runs a list in this process, and ``flows/``
maps each stage to Prefect tasks (one per chunk) and runs the same lists.

::

    nightly: imports -> content -> profile* -> segment -> match* -> segment_table -> match_coverage
    deliver: recover -> journeys -> send* -> outbox_index -> journey_funnel -> delivery_report
                                                        (* one call per chunk of ids)

The end of the module holds what the commands run on demand, outside the lists: importing one
file, and a member's data rights.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select

from nurture import operations, reports, rights, sentences
from nurture.delivery import (
    DeliverySummary,
    RecoverySummary,
    RetryPolicy,
    acceptance_check_for,
    deliver_messages,
    due_message_ids,
    recover_stale_messages,
    write_outbox_index,
)
from nurture.embedding import embedder_name
from nurture.ingest import ImportSummary, import_activity, import_answers, import_members
from nurture.journeys import JourneySummary, advance_journeys
from nurture.journeys.best_hour import BestHoursSummary, store_best_hours
from nurture.profiling import FeatureLayout, ProfileSummary, build_profiles
from nurture.recommend import (
    MatchSummary,
    complete_watermark,
    embed_content_items,
    last_watermark,
    members_to_match,
    members_to_profile,
    recommend_for_members,
    start_match_run,
    take_watermark,
)
from nurture.runtime import Runtime, utc_now
from nurture.segmentation import SegmentationSummary, assign_changed_members, segment_members
from nurture.settings import Settings
from nurture.storage import (
    ActivityEvent,
    Answer,
    EmbeddingCacheEntry,
    Enrollment,
    Member,
    Message,
    Recommendation,
    refresh_statistics,
)
from nurture.workspace import ContentSyncSummary, sync_content_items

__all__ = [
    "DELIVER",
    "IMPORT_FILES",
    "IMPORT_ORDER",
    "MEMBERS",
    "MESSAGES",
    "NIGHTLY",
    "STAGE_LISTS",
    "TO_MATCH",
    "TO_PROFILE",
    "Fanout",
    "ImportKind",
    "PendingImport",
    "Stage",
    "StageList",
    "best_hours",
    "deliver_chunk",
    "delivery_report",
    "due_messages",
    "erase_member",
    "experiment_results",
    "export_member",
    "finish_delivery",
    "import_file",
    "import_pending_files",
    "imports_dir",
    "journey_funnel",
    "match_chunk",
    "match_coverage",
    "member_ids",
    "members_to_match_ids",
    "members_to_profile_ids",
    "move_imported",
    "pending_import_files",
    "pending_imports",
    "profile_chunk",
    "recover_deliveries",
    "refresh_member",
    "run_journeys",
    "segment",
    "segment_table",
    "start_matching",
    "sync_workspace",
]

logger = logging.getLogger(__name__)

ImportKind = Literal["members", "answers", "activity"]

IMPORT_ORDER: tuple[ImportKind, ...] = ("members", "answers", "activity")
"""Kinds of import file, in the order they are imported: answers and events need members."""

_STALE_RECOMMENDATIONS = 0.1
"""Share of the recommendations table a match run's ``ANALYZE`` waits for to have changed
(autovacuum's default ``autovacuum_analyze_scale_factor``): a warm nightly that rewrites a few
members' rows skips reading the whole table twice."""
_STALE_EMBEDDINGS = 0.1
"""Share of the embedding cache that must have changed since it was last analysed for a match
run to analyse it again (autovacuum's default scale factor): after a first profile stage it
always is; a warm nightly that embedded a few new answers skips it."""

_IMPORT_FILE = re.compile(r"^(members|answers|activity)\b.*\.(csv|jsonl)$", re.IGNORECASE)


# --- how a stage is declared ----------------------------------------------------------------


@dataclass(frozen=True)
class Fanout:
    """What a stage runs over, one call per chunk: the members, the due messages, the files.

    Attributes:
        name: What the items are (``members``...).
        list_items: ``(runtime, now) -> items``: plain values (ids, paths as text), in order.
        chunked: Whether calls take ``chunk_size`` items each (else one item each).
        in_order: Whether the calls must run one after the other, in the process that listed
            the items (files on its disk, members before their answers); else they may run at
            once, anywhere.
        says: What the listing tells the log, with ``{count}`` items.
    """

    name: str
    list_items: Callable[[Runtime, dt.datetime], list[Any]]
    chunked: bool = True
    in_order: bool = False
    says: str = "{count} items"


@dataclass(frozen=True)
class Stage:
    """One step of a run, declared once for every way of running it.

    Attributes:
        name: The stage's name: its key in the run's summary.
        run: The function it calls: ``run(runtime, now)``, or for a stage over a fanout
            ``run(runtime, items, now, **started)`` for each chunk of items.
        over: What the stage fans out over; None for one call.
        start: ``(runtime, now) -> keyword arguments`` computed once before the chunks (the
            match run the chunks write to); None when the chunks need none.
        keep: Fields of a chunk's summary that are the same in every chunk (ids, layouts):
            kept, where the other counts are added up.
        empty: The summary of a fanout over no item.
        says: What a call's summary tells the log (see :meth:`describe`).
        unit: What the progress of a stage of one call counts (``enrollments``); a stage over
            a fanout counts its items.
    """

    name: str
    run: Callable[..., Any]
    over: Fanout | None = None
    start: Callable[[Runtime, dt.datetime], dict[str, Any]] | None = None
    keep: tuple[str, ...] = ()
    empty: Any = None
    says: str | Callable[[Any], str] = "{name}: done"
    unit: str = "items"

    def describe(self, summary: Any) -> str:
        """One log line for the plain summary of one call of the stage."""
        if callable(self.says):
            return self.says(summary)
        values: dict[str, Any] = {"name": self.name}
        if isinstance(summary, Mapping):
            values.update(summary)
        elif isinstance(summary, list):
            values["count"] = len(summary)
        return self.says.format_map(_Unknown(values))


class _Unknown(dict[str, Any]):
    """Format values where a missing field reads ``?`` rather than failing the stage."""

    def __missing__(self, key: str) -> str:
        return "?"


@dataclass(frozen=True)
class StageList:
    """The stages of one run (``nightly``, ``deliver``), in the order they run.

    Attributes:
        name: The run's name, also its flow's name.
        stages: The stages, in order.
    """

    name: str
    stages: tuple[Stage, ...] = field(default_factory=tuple)

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    @property
    def names(self) -> list[str]:
        """The stages' names, in order."""
        return [stage.name for stage in self.stages]

    def stage(self, name: str) -> Stage:
        """The stage called ``name``.

        Raises:
            KeyError: The list has no such stage.
        """
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"the {self.name} run has no stage {name!r}; it has {self.names}")


# --- nightly: imports -----------------------------------------------------------------------


@dataclass(frozen=True)
class PendingImport:
    """An import file waiting in the imports folder.

    Attributes:
        kind: What the file holds (from its name: ``members*.csv``, ``answers*.jsonl``...).
        path: The file.
    """

    kind: ImportKind
    path: Path


def imports_dir(settings: Settings) -> Path:
    """The folder the nightly run imports files from: ``<data_dir>/imports``."""
    return settings.data_dir / "imports"


def _import_kind(name: str) -> ImportKind | None:
    match = _IMPORT_FILE.match(name)
    return match.group(1).lower() if match else None  # type: ignore[return-value]


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
        kind = _import_kind(path.name)
        if path.is_file() and kind is not None:
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


def pending_import_files(runtime: Runtime, now: dt.datetime) -> list[str]:
    """The files waiting in ``<data_dir>/imports``, in the order they import (as text)."""
    return [str(pending.path) for pending in pending_imports(imports_dir(runtime.settings))]


def import_pending_files(
    runtime: Runtime, paths: Sequence[str], now: dt.datetime
) -> list[dict[str, Any]]:
    """Import waiting files, in order, moving each to ``done/``, or ``failed/`` if unreadable.

    Returns:
        One row per file: its name, kind, outcome, where it went, and the import's counts or
        why the file was refused.
    """
    return [_import_pending_file(runtime, Path(path), now) for path in paths]


def _import_pending_file(runtime: Runtime, source: Path, now: dt.datetime) -> dict[str, Any]:
    kind = _import_kind(source.name)
    if kind is None:
        raise ValueError(f"{source.name} is not an import file (members*, answers*, activity*)")
    row: dict[str, Any] = {"file": source.name, "kind": kind, "outcome": "failed", "error": ""}
    try:
        summary = import_file(runtime, kind, source)
    except ValueError as error:  # ImportFileError: the whole file cannot be read
        logger.error("refused %s: %s", source.name, error)
        moved = move_imported(source, "failed", now)
        return {**row, "error": str(error), "moved_to": str(moved)}
    moved = move_imported(source, "done", now)
    return {
        **row,
        "outcome": "done",
        "moved_to": str(moved),
        "read": summary.read,
        "stored": summary.stored,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "refused": summary.refused,
        "rejects": str(summary.rejects_path or ""),
    }


def _describe_imports(rows: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"imported {row['file']} ({row['kind']}): {row['read']} read, {row['stored']} stored, "
        f"{row['updated']} updated, {row['refused']} refused"
        if row["outcome"] == "done"
        else f"refused {row['file']}: {row['error']}"
        for row in rows
    )


# --- nightly: content, profiles, segments, matching -----------------------------------------


def sync_workspace(runtime: Runtime, now: dt.datetime) -> ContentSyncSummary:
    """Bring the content library into the database and embed the items not embedded yet."""
    specs = runtime.workspace.content_items
    with runtime.session() as session:
        summary = sync_content_items(session, specs, now=now)
        embedded = embed_content_items(session, runtime.embedder)
    logger.info("%s", sentences.describe_content_sync(summary, embedded))
    return summary


def member_ids(runtime: Runtime, now: dt.datetime) -> list[int]:
    """Ids of every member, in id order."""
    with runtime.session() as session:
        return list(session.scalars(select(Member.id).order_by(Member.id)))


def _refresh_after(runtime: Runtime) -> dt.timedelta:
    return dt.timedelta(days=runtime.settings.refresh_after_days)


def _match_params(runtime: Runtime) -> dict[str, Any]:
    """What a match run's results depend on besides the data: the watermark compares them."""
    settings = runtime.settings
    kinds = settings.recommendation_kinds
    params = {
        "embedding_model": embedder_name(
            settings.embedding_model,
            settings.embedding_backend,
            settings.library_embedding_backend,
        ),
        "dim": runtime.embedder.dim,
        "k": settings.recommendations_per_member,
        "weights": runtime.ranking_weights.model_dump(),
        "newcomer_weights": runtime.newcomer_ranking_weights.model_dump(),
        "kinds": sorted(kinds) if kinds is not None else None,
    }
    return dict(json.loads(json.dumps(params)))  # as stored: tuples become lists


def members_to_profile_ids(runtime: Runtime, now: dt.datetime) -> list[int]:
    """Ids of the members the nightly profiles, in id order.

    With ``incremental_nightly``, those changed since the last complete nightly
    (:func:`nurture.recommend.members_to_profile`); everyone on a first run, with the setting
    off, or when the embedding model or its backend changed.
    """
    settings = runtime.settings
    with runtime.session() as session:
        since = last_watermark(session) if settings.incremental_nightly else None
        if since is None or (since.params or {}).get("embedding_model") != (
            embedder_name(
                settings.embedding_model,
                settings.embedding_backend,
                settings.library_embedding_backend,
            )
        ):
            return member_ids(runtime, now)
        dim = int((since.params or {})["dim"])
        layout = FeatureLayout.from_questionnaire(runtime.workspace.questionnaire, dim)
        return members_to_profile(
            session, since, now, layout_hash=layout.hash, max_age=_refresh_after(runtime)
        )


def members_to_match_ids(runtime: Runtime, now: dt.datetime) -> list[int]:
    """Ids of the members the nightly matches, in id order.

    With ``incremental_nightly``, those changed since the last complete nightly, those profiled
    by this one, those whose segment moved (:func:`nurture.recommend.members_to_match`); all of
    them on a first run, with the setting off, or when the library or the ranking changed.
    """
    if not runtime.settings.incremental_nightly:
        return member_ids(runtime, now)
    params = _match_params(runtime)
    with runtime.session() as session:
        since = last_watermark(session)
        dim = runtime.embedder.dim
        layout = FeatureLayout.from_questionnaire(runtime.workspace.questionnaire, dim)
        return members_to_match(
            session,
            since,
            now,
            params,
            layout_hash=layout.hash,
            max_age=_refresh_after(runtime),
        )


def profile_chunk(runtime: Runtime, ids: Sequence[int], now: dt.datetime) -> ProfileSummary:
    """Build and store the profiles of the members ``ids``."""
    questionnaire = runtime.workspace.questionnaire
    with runtime.session() as session:
        return build_profiles(
            session,
            runtime.embedder,
            questionnaire,
            now,
            ids,
            chunk_size=runtime.settings.chunk_size,
        )


def segment(runtime: Runtime, now: dt.datetime) -> SegmentationSummary:
    """Cluster every profiled member into labelled segments, then evaluate the rule segments.

    With ``incremental_nightly``, after a complete nightly, when few profiles changed since the
    last clustering (``segment_refit_share``), only the changed members are placed, at their
    nearest segment (:func:`nurture.segmentation.assign_changed_members`).
    """
    settings, workspace = runtime.settings, runtime.workspace
    questionnaire, rules = workspace.questionnaire, workspace.segment_rules
    move_after = dt.timedelta(days=settings.segment_move_after_days)
    with runtime.session() as session:
        if settings.incremental_nightly and last_watermark(session) is not None:
            assigned = assign_changed_members(
                session,
                now,
                max_share=settings.segment_refit_share,
                max_age=_refresh_after(runtime),
                move_after=move_after,
                rules=rules,
            )
            if assigned is not None:
                return assigned
        return segment_members(
            session,
            questionnaire=questionnaire,
            now=now,
            n_segments=settings.n_segments,
            min_segments=settings.min_segments,
            max_segments=settings.max_segments,
            seed=settings.random_seed,
            block_weights=dict(settings.segment_block_weights.items()),
            mini_batch_threshold=settings.segment_mini_batch_threshold,
            sample_size=settings.segment_sample_size,
            fit_size=settings.segment_fit_size,
            move_after=move_after,
            rules=rules,
        )


def start_matching(runtime: Runtime, now: dt.datetime) -> dict[str, int]:
    """Record a new match run; return ``{"run_id": ...}`` for :func:`match_chunk`.

    With ``incremental_nightly``, the run records the database's watermark, which
    :func:`match_coverage` marks complete once the run's members are all matched.
    """
    settings = runtime.settings
    with runtime.session() as session:
        # The run deletes each chunk's previous recommendations by member: on statistics of
        # a table that has grown since, PostgreSQL plans that as a scan of the whole table.
        refresh_statistics(session, (Recommendation,), stale_share=_STALE_RECOMMENDATIONS)
        # Each chunk reads its members' answer vectors from the embedding cache, which the
        # profile stage has just filled: on the statistics of its smaller (or never counted)
        # self, PostgreSQL reads every vector the model cached for each chunk's few hundred,
        # a scan that grows with the community, chunk after chunk.
        refresh_statistics(session, (EmbeddingCacheEntry,), stale_share=_STALE_EMBEDDINGS)
        watermark = (
            take_watermark(session, now, utc_now(), _match_params(runtime))
            if settings.incremental_nightly
            else None
        )
        run_id = start_match_run(
            session,
            runtime.embedder,
            runtime.ranking_weights,
            settings.recommendations_per_member,
            kinds=settings.recommendation_kinds,
            watermark=watermark,
            newcomer_weights=runtime.newcomer_ranking_weights,
        )
    return {"run_id": run_id}


def match_chunk(
    runtime: Runtime, ids: Sequence[int], now: dt.datetime, *, run_id: int
) -> MatchSummary:
    """Rank the content library for the members ``ids`` and store their recommendations."""
    settings = runtime.settings
    with runtime.session() as session:
        return recommend_for_members(
            session,
            runtime.embedder,
            ids,
            now,
            settings.recommendations_per_member,
            runtime.ranking_weights,
            run_id=run_id,
            kinds=settings.recommendation_kinds,
            choice_questions=_choice_questions(runtime),
            newcomer_weights=runtime.newcomer_ranking_weights,
            state_dir=_match_state_dir(runtime),
        )


def _match_state_dir(runtime: Runtime) -> Path:
    """Where a match run stores what it learns from everyone's engagements, for the next."""
    return runtime.settings.data_dir / "cache" / "match"


def refresh_member(runtime: Runtime, member_id: int, now: dt.datetime) -> MatchSummary:
    """Profile one member again and rank the library for them (after they answered)."""
    profile_chunk(runtime, [member_id], now)
    settings = runtime.settings
    with runtime.session() as session:
        return recommend_for_members(
            session,
            runtime.embedder,
            [member_id],
            now,
            settings.recommendations_per_member,
            runtime.ranking_weights,
            kinds=settings.recommendation_kinds,
            choice_questions=_choice_questions(runtime),
            newcomer_weights=runtime.newcomer_ranking_weights,
        )


def _choice_questions(runtime: Runtime) -> list[str]:
    """Keys of the questionnaire's single-choice questions (none without a questionnaire)."""
    if not runtime.settings.questionnaire_path.is_file():
        return []
    return [
        question.key
        for question in runtime.workspace.questionnaire.questions
        if question.kind == "single_choice"
    ]


def best_hours(runtime: Runtime, now: dt.datetime) -> BestHoursSummary:
    """Each member's best hour of day for an email, from their opens and clicks (and segment)."""
    with runtime.session() as session:
        return store_best_hours(session, now, chunk_size=runtime.settings.chunk_size)


def experiment_results(runtime: Runtime, now: dt.datetime) -> list[dict[str, Any]]:
    """Each journey with a holdout or a split, its arms compared (``JourneyResults.to_dict``)."""
    from nurture.journeys.results import journey_results

    if not any(runtime.settings.journeys_dir.glob("*.y*ml")):
        return []  # a workspace without journeys (an evaluation's) has nothing to compare
    tested = [
        definition
        for definition in runtime.workspace.journeys
        if definition.holdout_share or definition.split_step is not None
    ]
    with runtime.session() as session:
        return [journey_results(session, definition, now).to_dict() for definition in tested]


def segment_table(runtime: Runtime, now: dt.datetime) -> list[reports.SegmentRow]:
    """One row per active segment: label, kind, size, share, top traits and words."""
    questionnaire = runtime.workspace.questionnaire
    with runtime.session() as session:
        return reports.segment_table(session, now, questionnaire=questionnaire)


def match_coverage(runtime: Runtime, now: dt.datetime) -> operations.CoverageSummary:
    """How many members have recommendations and how much of the live library they cover.

    It runs once the match stage is done: it first marks the match run's watermark complete,
    so that the next nightly works from it (see :func:`members_to_profile_ids`).
    """
    with runtime.session() as session:
        complete_watermark(session)
        # The run rewrote the table: analysed again once enough of it changed.
        refresh_statistics(session, (Recommendation,), stale_share=_STALE_RECOMMENDATIONS)
    with runtime.session() as session:
        return operations.match_coverage(session, now)


# --- deliver --------------------------------------------------------------------------------


def recover_deliveries(runtime: Runtime, now: dt.datetime) -> RecoverySummary:
    """Settle the messages an interrupted run left in ``sending``, never sending one twice.

    Those never handed to the backend go back in the queue; those the provider reported on, or
    the outbox holds, become ``sent``; the others ``unknown``, for an operator.
    """
    settings = runtime.settings
    stale_after = dt.timedelta(minutes=settings.sending_stale_after_minutes)
    with runtime.session() as session:
        return recover_stale_messages(
            session,
            now,
            stale_after,
            check=acceptance_check_for(settings),
            max_attempts=settings.max_send_attempts,
        )


def run_journeys(runtime: Runtime, now: dt.datetime) -> JourneySummary:
    """Enrol members in the workspace's journeys and queue the messages that are due.

    A run that would start emailing more of the community at once than ``sending.yaml``'s
    backfill limit allows is refused (``BackfillRefusedError``, nothing kept) unless the
    settings allow it (``allow_backfill``).
    """
    settings, workspace = runtime.settings, runtime.workspace
    definitions, rules = workspace.journeys, workspace.sending_rules
    with runtime.session() as session:
        # Enrollments and messages grow with every pass: their statistics brought up to date
        # first, so that the pass's lookups by member use their indexes on PostgreSQL.
        refresh_statistics(session, (Enrollment, Message))
        session.commit()
        return advance_journeys(
            session,
            definitions,
            now,
            chunk_size=settings.chunk_size,
            suppression_salt=settings.suppression_salt.get_secret_value(),
            rules=rules,
            backfill=None if settings.allow_backfill else rules.backfill,
        )


def due_messages(runtime: Runtime, now: dt.datetime) -> list[int]:
    """Ids of the queued messages due at ``now``, oldest first."""
    with runtime.session() as session:
        return due_message_ids(session, now)


def deliver_chunk(runtime: Runtime, ids: Sequence[int], now: dt.datetime) -> DeliverySummary:
    """Render and send the messages ``ids`` through the configured mail backend, exactly once.

    ``send_concurrency`` emails go out at a time; transient errors are retried in later runs
    with backoff (``max_send_attempts``, ``retry_base_seconds``, ``retry_max_seconds``).
    """
    settings = runtime.settings
    mailer, renderer = runtime.mailer, runtime.renderer
    brand = runtime.workspace.brand
    with runtime.session() as session:
        return deliver_messages(
            session,
            mailer,
            renderer,
            ids,
            now,
            sender_email=settings.sender_email,
            sender_name=settings.sender_name,
            suppression_salt=settings.suppression_salt.get_secret_value(),
            reply_to=brand.reply_to if brand is not None else None,
            concurrency=settings.send_concurrency,
            retry=RetryPolicy(
                max_attempts=settings.max_send_attempts,
                base_seconds=settings.retry_base_seconds,
                max_seconds=settings.retry_max_seconds,
                ambiguous_seconds=settings.sending_stale_after_minutes * 60.0,
            ),
            clock=utc_now,
        )


def finish_delivery(runtime: Runtime, now: dt.datetime) -> Path | None:
    """Refresh the outbox's ``index.html`` and return its path; None for other mail backends."""
    if runtime.settings.mail_backend != "outbox":
        return None
    return write_outbox_index(runtime.settings.resolved_outbox_dir)


def journey_funnel(runtime: Runtime, now: dt.datetime) -> list[operations.FunnelRow]:
    """Per journey and send step: entered, sent, delivered, opened, clicked, goal reached."""
    with runtime.session() as session:
        return operations.journey_funnel(session)


def delivery_report(runtime: Runtime, now: dt.datetime) -> operations.DeliveryReport:
    """Messages by status and failures by reason, and the queue, at ``now``."""
    with runtime.session() as session:
        return operations.delivery_report(session, None, now=now)


# --- the lists ------------------------------------------------------------------------------

MEMBERS = Fanout("members", member_ids, says="{count} members")
"""Every member, in chunks of ``chunk_size`` ids."""

TO_PROFILE = Fanout("members to profile", members_to_profile_ids, says="{count} members to profile")
"""The members the nightly profiles (changed ones only, with ``incremental_nightly``)."""

TO_MATCH = Fanout("members to match", members_to_match_ids, says="{count} members to match")
"""The members the nightly matches, listed after segmentation (whose moves count)."""

MESSAGES = Fanout("messages", due_messages, says="{count} messages due")
"""The messages due, in chunks of ``chunk_size`` ids."""

IMPORT_FILES = Fanout(
    "import files",
    pending_import_files,
    chunked=False,
    in_order=True,
    says="{count} files waiting to be imported",
)
"""The files waiting in the imports folder, one at a time, in import order."""

# Every stage may be retried (flows/ does): imports are idempotent (records are upserted,
# events deduplicated by key); profiles, segment memberships and recommendations are replaced,
# and a match run whose attempt failed is rolled back; advancing never queues a step twice;
# sending claims each message (queued -> sending, committed) before the mail backend sees it,
# so a retried chunk skips what an earlier attempt claimed, and a message left "sending" by a
# crash is settled by recover_deliveries: re-queued if it was never handed to the backend, else
# from provider events or the outbox's file, never re-sent blindly. Reports only read.
NIGHTLY = StageList(
    "nightly",
    (
        Stage("imports", import_pending_files, over=IMPORT_FILES, empty=[], says=_describe_imports),
        Stage(
            "content",
            sync_workspace,
            says=sentences.describe_content_sync,
        ),
        Stage(
            "profile",
            profile_chunk,
            over=TO_PROFILE,
            keep=("feature_names_hash", "n_features"),
            empty=ProfileSummary(profiled=0, texts_embedded=0),
            says="profiled {profiled} members, {texts_embedded} new texts embedded",
        ),
        Stage(
            "segment",
            segment,
            says=sentences.describe_segmentation,
        ),
        Stage(
            "match",
            match_chunk,
            over=TO_MATCH,
            start=start_matching,
            keep=("run_id",),
            empty=MatchSummary(run_id=0, members=0, recommendations=0, members_without_items=0),
            says="{recommendations} recommendations for {members} members",
        ),
        Stage(
            "best_hours",
            best_hours,
            says="best hours of {members} members, {from_own_events} from their own opens",
        ),
        Stage("segment_table", segment_table, says="{count} segment cards"),
        Stage(
            "experiment_results",
            experiment_results,
            says="{count} journeys with a holdout or a split compared",
        ),
        Stage(
            "match_coverage",
            match_coverage,
            says="match coverage: {members_with_recommendations} of {members} members, "
            "{items_recommended} of {live_items} live items",
        ),
    ),
)
"""The nightly run: import waiting files, sync content, profile, segment, match, report."""

DELIVER = StageList(
    "deliver",
    (
        Stage(
            "recover",
            recover_deliveries,
            says="recovered deliveries: {sent} settled as sent, {requeued} re-queued, "
            "{unknown} unknown, {failed} failed",
        ),
        Stage(
            "journeys",
            run_journeys,
            says=sentences.describe_journeys,
            unit="enrollments",
        ),
        Stage(
            "send",
            deliver_chunk,
            over=MESSAGES,
            empty=DeliverySummary(),
            says=sentences.describe_delivery,
        ),
        Stage("outbox_index", finish_delivery, says=lambda path: f"outbox index: {path}"),
        Stage("journey_funnel", journey_funnel, says="{count} journey steps in the funnel"),
        Stage(
            "delivery_report",
            delivery_report,
            says="emails: {total} in all, {queued_due} due now",
        ),
    ),
)
"""The deliver run: settle interrupted sends, advance journeys, send what is due, report."""

STAGE_LISTS: Mapping[str, StageList] = {NIGHTLY.name: NIGHTLY, DELIVER.name: DELIVER}
"""Every stage list, by name."""


# --- on demand, outside the lists -----------------------------------------------------------


_IMPORTED_TABLE: dict[str, type[Any]] = {
    "members": Member,
    "answers": Answer,
    "activity": ActivityEvent,
}
"""The table each kind of import writes."""


def import_file(
    runtime: Runtime,
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
        rejects_path = runtime.settings.data_dir / "rejects" / f"{path.name}.rejects.csv"
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    layout: dict[str, Any] = {"delimiter": delimiter, "encoding": encoding}
    watched = runtime.progress.task(f"import {path.name}", _records_in(path), "records")
    with watched, runtime.session() as session:
        if kind == "members":
            languages = runtime.workspace.languages
            summary = import_members(session, path, rejects_path, languages=languages, **layout)
        elif kind == "answers":
            questionnaire = runtime.workspace.questionnaire
            summary = import_answers(session, path, questionnaire, rejects_path, **layout)
        else:
            summary = import_activity(session, path, rejects_path, **layout)
        if summary.stored or summary.updated:
            # The nightly reads these tables next: without fresh statistics PostgreSQL plans
            # them as the empty tables they were (a per-member subquery of the inactivity
            # trigger took minutes after a first large import, autovacuum not yet round).
            refresh_statistics(session, (_IMPORTED_TABLE[kind],))
            session.commit()
        return summary


def _records_in(path: Path) -> int | None:
    """About how many records ``path`` holds: its lines (less a CSV header), counted fast.

    A CSV field may span lines, so this is an estimate, for a progress bar; None when the
    file cannot be read.
    """
    try:
        with path.open("rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
            handle.seek(max(handle.tell() - 1, 0))
            lines += handle.read(1) not in (b"\n", b"")  # a last line without a newline
    except OSError:
        return None
    return max(lines - (path.suffix.lower() == ".csv"), 0)


def export_member(runtime: Runtime, email: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """Everything the database holds about the member with address ``email``, JSON-ready.

    Raises:
        MemberNotFoundError: No member has that address.
    """
    salt = runtime.settings.suppression_salt.get_secret_value()
    with runtime.session() as session:
        return rights.export_member(session, email, salt=salt, now=now)


def erase_member(
    runtime: Runtime, email: str, now: dt.datetime | None = None
) -> rights.ErasureSummary:
    """Erase the member with address ``email`` and suppress the address for good.

    The database rows go first, in one transaction; then the outbox copies of their emails
    (counted as ``outbox_files``). A repeated erasure deletes nothing and finishes the job if
    an earlier one stopped between the two.

    Raises:
        MemberNotFoundError: No member has that address and it is not on the suppression list.
    """
    salt = runtime.settings.suppression_salt.get_secret_value()
    with runtime.session() as session:
        summary = rights.erase_member(session, email, salt=salt, now=now)
    files = rights.erase_from_outbox(runtime.settings.resolved_outbox_dir, email)
    if files:
        logger.info("erased %d outbox emails", files)
    return dataclasses.replace(summary, deleted={**summary.deleted, "outbox_files": files})
