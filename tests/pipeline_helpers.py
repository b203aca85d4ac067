"""Helpers shared by the stage, CLI and flow tests: a small demo community on a database."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

from sqlalchemy import select

from nurture.demo import DemoFiles, generate_library_community
from nurture.runtime import Runtime
from nurture.stages import import_file
from nurture.storage import Recommendation

CONTENT = Path(__file__).resolve().parents[1] / "content"
NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def seed_demo(runtime: Runtime, n_members: int, seed: int = 3) -> DemoFiles:
    """Generate a demo community into the data folder and import it."""
    specs = runtime.workspace.content_items
    files = generate_library_community(
        runtime.settings.data_dir / "demo",
        n_members,
        seed,
        now=NOW - dt.timedelta(days=1),
        library=specs,
        dated=False,
        questionnaire=runtime.workspace.questionnaire,
    )
    for kind, path in (
        ("members", files.members),
        ("answers", files.answers),
        ("activity", files.activity),
    ):
        summary = import_file(runtime, kind, path)  # type: ignore[arg-type]
        assert summary.refused == 0, summary.problems
    return files


def welcome_only_workspace(target: Path) -> Path:
    """A copy of the demo workspace with the welcome journey only (to every member, however
    long ago they joined, none held out) and no sending rules (no budget, quiet hours or
    backfill guard).

    For tests of the stages' mechanics (exactly once, erasure) whose counts must not depend
    on the other care journeys, the welcome's holdout, the members' time zones (quiet hours)
    or the budget.
    """
    shutil.copytree(CONTENT, target, ignore=shutil.ignore_patterns("*.yaml"), dirs_exist_ok=True)
    for name in ("questionnaire.yaml", "segments.yaml"):
        shutil.copy(CONTENT / name, target / name)
    # Every member of the seeded community is welcomed, whenever they joined.
    welcome = (CONTENT / "journeys" / "welcome.yaml").read_text(encoding="utf-8")
    welcome = re.sub(r"(?m)^holdout: .*$", "", welcome)
    (target / "journeys" / "welcome.yaml").write_text(
        welcome.replace("within_days: 14", "within_days: null"), encoding="utf-8"
    )
    (target / "sending.yaml").write_text(
        "budget: null\nquiet_hours: null\nbackfill: null\n", encoding="utf-8"
    )
    return target


def recommendation_rows(runtime: Runtime) -> dict[int, list[tuple[int, int, float, str]]]:
    """Each member's recommendations in rank order: (item id, rank, score to 5 places, reason)."""
    with runtime.session() as session:
        rows = session.execute(
            select(
                Recommendation.member_id,
                Recommendation.content_item_id,
                Recommendation.rank,
                Recommendation.score,
                Recommendation.reason,
            ).order_by(Recommendation.member_id, Recommendation.rank)
        ).all()
    found: dict[int, list[tuple[int, int, float, str]]] = {}
    for member_id, item_id, rank, score, reason in rows:
        found.setdefault(member_id, []).append((item_id, rank, round(score, 5), reason))
    return found
