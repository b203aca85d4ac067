"""The nightly flow: sync content, profile, segment and match every member."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import chunk_name, overrides
from nurture import pipeline

__all__ = ["nightly"]

# Stages are idempotent (profiles and recommendations are replaced), so retrying is safe.
_TASK_OPTIONS: dict[str, Any] = {"retries": 2, "retry_delay_seconds": 10, "cache_policy": NO_CACHE}


@task(name="sync content", **_TASK_OPTIONS)
def sync_content(settings: dict[str, Any], now: dt.datetime) -> dict[str, int]:
    """Bring the content library into the database and embed new items."""
    summary = pipeline.sync_workspace(pipeline.settings_from(settings), now)
    get_run_logger().info("content library: %s", summary)
    return dataclasses.asdict(summary)


@task(name="list members", **_TASK_OPTIONS)
def list_members(settings: dict[str, Any]) -> list[int]:
    """Ids of every member."""
    return pipeline.member_ids(pipeline.settings_from(settings))


@task(name="profile members", **_TASK_OPTIONS)
def profile_members(settings: dict[str, Any], ids: list[int], now: dt.datetime) -> dict[str, Any]:
    """Build the profiles of one chunk of members."""
    summary = pipeline.profile_chunk(pipeline.settings_from(settings), ids, now)
    get_run_logger().info(
        "profiled %d members, %d texts embedded", summary.profiled, summary.texts_embedded
    )
    return dataclasses.asdict(summary)


@task(name="segment members", **_TASK_OPTIONS)
def segment_members(settings: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Cluster every profiled member into labelled segments."""
    summary = pipeline.segment(pipeline.settings_from(settings), now)
    logger = get_run_logger()
    logger.info("%d segments (silhouette %s)", summary.n_segments, summary.quality)
    for key, label in summary.labels.items():
        logger.info("  %s  %-40s %5d members", key, label, summary.sizes.get(key, 0))
    return dataclasses.asdict(summary)


@task(name="start match run", **_TASK_OPTIONS)
def start_match_run(settings: dict[str, Any]) -> int:
    """Record a new match run."""
    return pipeline.start_matching(pipeline.settings_from(settings))


@task(name="match content", **_TASK_OPTIONS)
def match_members(
    settings: dict[str, Any], run_id: int, ids: list[int], now: dt.datetime
) -> dict[str, Any]:
    """Rank the content library for one chunk of members."""
    summary = pipeline.match_chunk(pipeline.settings_from(settings), run_id, ids, now)
    get_run_logger().info(
        "%d recommendations for %d members", summary.recommendations, summary.members
    )
    return dataclasses.asdict(summary)


@flow(name="nightly", log_prints=True)
def nightly(
    workspace: str | None = None, data_dir: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Profile, segment and match every member; one task per chunk of members.

    Args:
        workspace: The workspace folder (default: ``NURTURE_WORKSPACE``).
        data_dir: The data folder (default: ``NURTURE_DATA_DIR``).
        now: The time the run computes for (default: now).

    Returns:
        Counts per stage.
    """
    settings = overrides(workspace, data_dir)
    when = pipeline.resolve_now(now)
    chunk_size = pipeline.settings_from(settings).chunk_size
    content = sync_content(settings, when)
    ids = list_members(settings)
    chunks = list(pipeline.chunked(ids, chunk_size))
    profiled = [
        profile_members.with_options(task_run_name=f"profile {chunk_name(c)}")(settings, c, when)
        for c in chunks
    ]
    segmentation = segment_members(settings, when)
    run_id = start_match_run(settings)
    matched = [
        match_members.with_options(task_run_name=f"match {chunk_name(c)}")(
            settings, run_id, c, when
        )
        for c in chunks
    ]
    return {
        "content": content,
        "members": len(ids),
        "profiled": sum(p["profiled"] for p in profiled),
        "texts_embedded": sum(p["texts_embedded"] for p in profiled),
        "segmentation": segmentation,
        "recommendations": sum(m["recommendations"] for m in matched),
    }
