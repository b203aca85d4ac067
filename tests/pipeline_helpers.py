"""Helpers shared by the pipeline, CLI and flow tests: a small demo community on a database."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from nurture import pipeline
from nurture.demo import DemoFiles, generate_demo_community
from nurture.settings import Settings
from nurture.workspace import load_content_library, load_questionnaire

CONTENT = Path(__file__).resolve().parents[1] / "content"
NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def seed_demo(settings: Settings, n_members: int, seed: int = 3) -> DemoFiles:
    """Generate a demo community into the data folder and import it."""
    specs = load_content_library(settings.content_dir)
    files = generate_demo_community(
        settings.data_dir / "demo",
        n_members,
        seed,
        now=NOW - dt.timedelta(days=1),
        content_keys=[spec.key for spec in specs],
        content_languages={spec.key: spec.language for spec in specs},
        questionnaire=load_questionnaire(settings.questionnaire_path),
    )
    for kind, path in (
        ("members", files.members),
        ("answers", files.answers),
        ("activity", files.activity),
    ):
        summary = pipeline.import_file(settings, kind, path)
        assert summary.refused == 0, summary.problems
    return files


def welcome_only_workspace(target: Path) -> Path:
    """A copy of the demo workspace with the welcome journey only and no sending rules.

    For tests of the pipeline's mechanics (exactly once, erasure) whose counts must not depend
    on the other care journeys, the members' time zones (quiet hours) or the budget.
    """
    shutil.copytree(CONTENT, target, ignore=shutil.ignore_patterns("*.yaml"), dirs_exist_ok=True)
    for name in ("questionnaire.yaml", "segments.yaml", "journeys/welcome.yaml"):
        shutil.copy(CONTENT / name, target / name)
    (target / "sending.yaml").write_text("budget: null\nquiet_hours: null\n", encoding="utf-8")
    return target
