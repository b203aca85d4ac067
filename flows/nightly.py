"""The nightly flow: import pending files, sync content, profile, segment, match, report."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import reports
from flows.common import (
    chunk_name,
    sum_counts,
    task_settings,
    with_task_runner,
)
from nurture import pipeline

__all__ = ["nightly"]

# Every nightly stage may be retried: imports are idempotent (records are upserted, events
# deduplicated by key), profiles, segment memberships and recommendations are replaced, and a
# match run whose attempt failed is rolled back. Nothing is cached: each run reads fresh data.
_RETRIED: dict[str, Any] = {"retries": 2, "retry_delay_seconds": 10, "cache_policy": NO_CACHE}


@task(**_RETRIED)
def import_file(
    settings: dict[str, Any], kind: pipeline.ImportKind, path: str, now: dt.datetime
) -> dict[str, Any]:
    """Import one pending file, then move it to ``done/``, or to ``failed/`` if unreadable."""
    logger = get_run_logger()
    resolved = pipeline.settings_from(settings)
    source = Path(path)
    row: dict[str, Any] = {"file": source.name, "kind": kind, "outcome": "failed", "error": ""}
    try:
        summary = pipeline.import_file(resolved, kind, source)
    except ValueError as error:  # ImportFileError: the whole file cannot be read
        logger.error("refused %s: %s", source.name, error)
        moved = pipeline.move_imported(source, "failed", now)
        return {**row, "error": str(error), "moved_to": str(moved)}
    moved = pipeline.move_imported(source, "done", now)
    logger.info(
        "imported %s (%s): %d read, %d stored, %d updated, %d refused",
        source.name,
        kind,
        summary.read,
        summary.stored,
        summary.updated,
        summary.refused,
    )
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


@task(**_RETRIED)
def sync_workspace(settings: dict[str, Any], now: dt.datetime) -> dict[str, int]:
    """Bring the content library into the database and embed new items."""
    summary = pipeline.sync_workspace(pipeline.settings_from(settings), now)
    get_run_logger().info("content library: %s", summary)
    return dataclasses.asdict(summary)


@task(**_RETRIED)
def member_ids(settings: dict[str, Any]) -> list[int]:
    """Ids of every member."""
    return pipeline.member_ids(pipeline.settings_from(settings))


@task(**_RETRIED)
def profile_chunk(settings: dict[str, Any], ids: list[int], now: dt.datetime) -> dict[str, Any]:
    """Build the profiles of one chunk of members."""
    summary = pipeline.profile_chunk(pipeline.settings_from(settings), ids, now)
    get_run_logger().info(
        "profiled %d members, %d texts embedded", summary.profiled, summary.texts_embedded
    )
    return dataclasses.asdict(summary)


@task(**_RETRIED)
def segment(settings: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Cluster every profiled member into labelled segments."""
    summary = pipeline.segment(pipeline.settings_from(settings), now)
    logger = get_run_logger()
    logger.info("%d segments (silhouette %s)", summary.n_segments, summary.quality)
    for key, label in summary.labels.items():
        logger.info("  %s  %-40s %5d members", key, label, summary.sizes.get(key, 0))
    return dataclasses.asdict(summary)


@task(**_RETRIED)
def start_matching(settings: dict[str, Any]) -> int:
    """Record a new match run."""
    return pipeline.start_matching(pipeline.settings_from(settings))


@task(**_RETRIED)
def match_chunk(
    settings: dict[str, Any], run_id: int, ids: list[int], now: dt.datetime
) -> dict[str, Any]:
    """Rank the content library for one chunk of members."""
    summary = pipeline.match_chunk(pipeline.settings_from(settings), run_id, ids, now)
    get_run_logger().info(
        "%d recommendations for %d members", summary.recommendations, summary.members
    )
    return dataclasses.asdict(summary)


@task(**_RETRIED)
def segment_table(settings: dict[str, Any], now: dt.datetime) -> int:
    """Publish the segment cards (artifact ``nurture-segments``); return how many."""
    rows = pipeline.segment_table(pipeline.settings_from(settings), now)
    reports.publish_segments([dataclasses.asdict(row) for row in rows])
    return len(rows)


@task(**_RETRIED)
def match_coverage(settings: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Publish the coverage of the latest match run (artifact ``nurture-match-coverage``)."""
    coverage = dataclasses.asdict(pipeline.match_coverage(pipeline.settings_from(settings), now))
    reports.publish_match_coverage(coverage)
    get_run_logger().info("match coverage: %s", coverage)
    return coverage


@flow(name="nightly", log_prints=True)
def nightly(
    workspace: str | None = None, data_dir: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Import pending files, then profile, segment and match every member, and report.

    Import files waiting in ``<data_dir>/imports`` are imported first, in the flow's process
    (they are on its disk). Profiling and matching go one task per chunk of members, submitted
    to the flow's task runner, which may spread them over a Dask cluster.

    Args:
        workspace: The workspace folder (default: ``NURTURE_WORKSPACE``).
        data_dir: The data folder (default: ``NURTURE_DATA_DIR``).
        now: The time the run computes for (default: now).

    Returns:
        Counts per stage.
    """
    logger = get_run_logger()
    settings = task_settings(workspace, data_dir)
    resolved = pipeline.settings_from(settings)
    when = pipeline.resolve_now(now)
    folder = pipeline.imports_dir(resolved)
    imported = [
        import_file.with_options(task_run_name=f"import_file {pending.path.name}")(
            settings, pending.kind, str(pending.path), when
        )
        for pending in pipeline.pending_imports(folder)
    ]
    reports.publish_imports(imported, str(folder))
    content = sync_workspace(settings, when)
    ids = member_ids(settings)
    chunks = list(pipeline.chunked(ids, resolved.chunk_size))
    profiling = [
        profile_chunk.with_options(task_run_name=f"profile_chunk {chunk_name(c)}").submit(
            settings, c, when
        )
        for c in chunks
    ]
    profiled = sum_counts(future.result() for future in profiling)
    segmentation = segment(settings, when)
    run_id = start_matching(settings)
    matching = [
        match_chunk.with_options(task_run_name=f"match_chunk {chunk_name(c)}").submit(
            settings, run_id, c, when
        )
        for c in chunks
    ]
    matched = sum_counts(future.result() for future in matching)
    segment_table(settings, when)
    match_coverage(settings, when)
    logger.info(
        "nightly: %d files imported, %d members profiled, %d recommendations",
        len(imported),
        profiled.get("profiled", 0),
        matched.get("recommendations", 0),
    )
    return {
        "imports": imported,
        "content": content,
        "members": len(ids),
        "profiled": profiled.get("profiled", 0),
        "texts_embedded": profiled.get("texts_embedded", 0),
        "segmentation": segmentation,
        "recommendations": matched.get("recommendations", 0),
    }


# Deployments load the flow from this module in a process of their own: the task runner is the
# one the environment of that process chooses (NURTURE_TASK_RUNNER...). Callers that hold their
# own settings pass ``with_task_runner(nightly, settings)`` instead.
nightly = with_task_runner(nightly)
