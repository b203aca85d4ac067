"""Peak memory of the segment stage alone, at two community sizes: how it grows per member.

``python -m benchmarks.segment_memory prepare DIR --members 20000`` builds a workspace, a
generated community of that size, imports it, syncs the content and profiles every member (as
``benchmarks.scale`` does, stand-in embedder), then keeps the database as ``DIR/profiled.db``.
``python -m benchmarks.segment_memory measure DIR [--fit-size N]`` copies that database and runs
the segment stage (clusters and rule segments, cold: no previous run) in a fresh process,
reporting the resident set size before the stage and its peak while it runs (sampled every
20 ms). Run both sizes and compare: the growth of the peak per member is what the stage holds
per member. ``--fit-size`` below both sizes measures the sampled path at both.
``measure DIR --stage match`` (or ``best_hours``, ``journeys``) then runs that stage alone, in a
fresh process, on the database the segment stage left (``DIR/segment.db``), likewise.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.scale import NOW, STAND_IN_MODEL, MemoryProbe
from benchmarks.scale import prepare_community as generate_scale_community
from nurture import stages
from nurture.chunks import chunked
from nurture.runtime import Runtime, settings_from

__all__ = ["STAGES_AFTER", "main", "measure_segment", "measure_stage", "prepare_community"]

STAGES_AFTER = ("match", "best_hours", "journeys")
"""The stages ``measure --stage`` runs on the segmented database."""

logger = logging.getLogger("benchmarks")


def _runtime(directory: Path, database: Path, fit_size: int | None = None) -> Runtime:
    more = {} if fit_size is None else {"segment_fit_size": fit_size}
    return Runtime(
        settings_from(
            {
                **more,
                "workspace": directory / "workspace",
                "data_dir": directory / "data",
                "database_url": f"sqlite:///{database}",
                "embedding_model": STAND_IN_MODEL,
                "mail_backend": "outbox",
                "allow_backfill": True,
                "chunk_size": 500,
            }
        )
    )


def prepare_community(directory: Path, members: int, seed: int = 7) -> Path:
    """Import a generated community of ``members`` and profile it; return the database's path."""
    files = generate_scale_community(directory, members=members, items=200, seed=seed).files
    database = directory / "profiled.db"
    runtime = _runtime(directory, database)
    for kind, path in (
        ("members", files.members),
        ("answers", files.answers),
        ("activity", files.activity),
    ):
        stages.import_file(runtime, kind, path)  # type: ignore[arg-type]
    stages.sync_workspace(runtime, NOW)
    profile_stage = stages.NIGHTLY.stage("profile")
    ids = profile_stage.over.list_items(runtime, NOW)  # type: ignore[union-attr]
    for chunk in chunked(ids, runtime.settings.chunk_size):
        stages.profile_chunk(runtime, chunk, NOW)
    runtime.close()
    return database


def measure_segment(directory: Path, fit_size: int | None = None) -> dict[str, float]:
    """Run the segment stage on a copy of the profiled database; its memory and time.

    ``fit_size`` replaces the setting ``segment_fit_size`` (the sample the clusters are fitted
    on and the segments described from).
    """
    database = directory / "segment.db"
    shutil.copyfile(directory / "profiled.db", database)
    runtime = _runtime(directory, database, fit_size)
    runtime.workspace  # noqa: B018 - loaded before the probe starts, as the nightly has it
    started = time.perf_counter()
    with MemoryProbe() as probe:
        summary = stages.segment(runtime, NOW)
    seconds = time.perf_counter() - started
    runtime.close()
    return {
        "members": summary.n_members,
        "segments": summary.n_segments,
        "rule_segments": len(summary.rule_sizes),
        "start_mb": probe.start / 2**20,
        "peak_mb": probe.peak / 2**20,
        "growth_mb": (probe.peak - probe.start) / 2**20,
        "seconds": seconds,
    }


def measure_stage(directory: Path, stage: str, fit_size: int | None = None) -> dict[str, float]:
    """Run one stage after segmentation on the database ``measure_segment`` left; its memory.

    Args:
        directory: The folder of ``prepare_community`` and ``measure_segment``.
        stage: One of :data:`STAGES_AFTER`.
        fit_size: As :func:`measure_segment`'s.

    Returns:
        The resident set size before the stage and its peak (MB), and its time.
    """
    runtime = _runtime(directory, directory / "segment.db", fit_size)
    runtime.workspace  # noqa: B018 - loaded before the probe starts, as the nightly has it
    runtime.embedder.embed(["warm up"])
    started = time.perf_counter()
    with MemoryProbe() as probe:
        if stage == "match":
            ids = stages.NIGHTLY.stage("match").over.list_items(runtime, NOW)  # type: ignore[union-attr]
            run = stages.start_matching(runtime, NOW)
            for chunk in chunked(ids, runtime.settings.chunk_size):
                stages.match_chunk(runtime, chunk, NOW, **run)
            stages.match_coverage(runtime, NOW)
        elif stage == "best_hours":
            stages.best_hours(runtime, NOW)
        elif stage == "journeys":
            stages.run_journeys(runtime, NOW)
        else:
            raise ValueError(f"stage: expected one of {STAGES_AFTER}, found {stage!r}")
    seconds = time.perf_counter() - started
    runtime.close()
    return {
        "start_mb": probe.start / 2**20,
        "peak_mb": probe.peak / 2**20,
        "growth_mb": (probe.peak - probe.start) / 2**20,
        "seconds": seconds,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``prepare DIR --members N`` or ``measure DIR [--stage STAGE]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.segment_memory")
    parser.add_argument("action", choices=["prepare", "measure"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--members", type=int, default=20000)
    parser.add_argument("--fit-size", type=int, help="measure: segment_fit_size to use")
    parser.add_argument(
        "--stage",
        choices=STAGES_AFTER,
        help="measure: this stage on the segmented database instead of the segment stage",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.action == "prepare":
        args.directory.mkdir(parents=True, exist_ok=True)
        print(prepare_community(args.directory, args.members))
    elif args.stage is not None:
        print(json.dumps(measure_stage(args.directory, args.stage, args.fit_size)))
    else:
        print(json.dumps(measure_segment(args.directory, args.fit_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
