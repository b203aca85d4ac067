"""``nurture evaluate`` end to end, on the example dataset and on a small demo workspace."""

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from nurture.cli.evaluate import html_path
from nurture.evaluation import (
    EvaluationDataError,
    load_interactions,
    nurture_sandbox,
    stage_workspace,
)
from nurture.orchestration import run_cycle
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import ActivityEvent, Answer, Member
from tests.pipeline_helpers import NOW, seed_demo

from .conftest import EXAMPLE, evaluate_app

runner = CliRunner()
METRICS = ["precision@10", "recall@10", "ndcg@10", "hit_rate@10", "coverage@10"]


def _invoke(settings: Settings, *args: str) -> tuple[str, dict]:  # type: ignore[type-arg]
    result = runner.invoke(evaluate_app(settings), ["evaluate", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    output = Path(args[args.index("--output") + 1]) if "--output" in args else None
    path = output or settings.data_dir / "reports" / "evaluation.json"
    return result.output, json.loads(path.read_text(encoding="utf-8"))


def test_the_example_dataset_runs_end_to_end_and_prints_the_table(settings: Settings) -> None:
    output, report = _invoke(settings, "--dataset", str(EXAMPLE))

    assert "warm members, k=10" in output
    for name in ("recommender", "nurture", "popularity", "item_knn", "ease", "random", *METRICS):
        assert name in output
    assert report["mode"] == "warm"
    assert report["k"] == 10
    assert report["seed"] == settings.random_seed
    assert report["dataset"] == {"source": "folder", "path": str(EXAMPLE)}
    assert report["split"]["kind"] == "given"
    assert report["counts"]["members"] == 100
    assert report["counts"]["items"] == 35
    assert report["counts"]["evaluated_members"] == report["counts"]["warm_members"] > 60
    assert set(report["metrics"]) == {
        "nurture",
        "popularity",
        "group_popularity",
        "item_knn",
        "ease",
        "random",
    }
    for values in report["metrics"].values():
        assert list(values) == METRICS
        assert all(0 <= value <= 1 for value in values.values())

    # No language column in the example: its members are grouped by history only.
    assert list(report["breakdowns"]) == ["history"]
    history = report["breakdowns"]["history"]
    assert list(history) == ["1-5", "6+"]  # warm: nobody has 0 training items
    assert sum(group["members"] for group in history.values()) == 81
    assert "P@10 / nDCG@10 by training items" in output
    for metric in ("precision", "ndcg"):
        for name, curve in report["curves"][metric].items():
            assert len(curve) == 10
            assert curve[-1] == report["metrics"][name][f"{metric}@10"]
    assert set(report["timings"]) == set(report["metrics"])
    assert set(report["timings"]["nurture"]) == {"seconds"}
    assert set(report["timings"]["ease"]) == {"seconds", "fit_seconds", "rank_seconds"}
    assert "seconds: nurture" in output
    assert set(report["comparisons"]) == set(report["metrics"]) - {"nurture"}
    for differences in report["comparisons"].values():
        assert list(differences) == ["precision@10", "ndcg@10"]
        for difference in differences.values():
            assert difference["low"] <= difference["difference"] <= difference["high"]
            assert difference["members"] == report["counts"]["evaluated_members"]
    random = report["comparisons"]["random"]["ndcg@10"]
    nurture_ndcg, random_ndcg = (
        report["metrics"][name]["ndcg@10"] for name in ("nurture", "random")
    )
    assert random["difference"] == pytest.approx(nurture_ndcg - random_ndcg, abs=2e-6)
    assert random["verdict"] == "above"
    assert "nurture minus each baseline" in output

    page = settings.data_dir / "reports" / "evaluation.html"
    html = page.read_text(encoding="utf-8")
    assert "report written to" in output
    assert 'id="precision-at-k"' in html and 'id="ndcg-at-k"' in html
    assert all(name in html for name in report["metrics"])
    assert 'id="comparisons"' in html


def test_cold_start_mode_with_another_k_and_output(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "out" / "cold.json"
    page = tmp_path / "pages" / "cold-start.html"
    output, report = _invoke(
        settings,
        "--dataset",
        str(EXAMPLE),
        "--cold-start",
        "--k",
        "5",
        "--output",
        str(path),
        "--html",
        str(page),
    )

    assert "15 cold-start members, k=5" in output
    assert report["mode"] == "cold-start"
    assert report["counts"]["evaluated_members"] == 15
    assert list(report["metrics"]["nurture"]) == [metric.replace("10", "5") for metric in METRICS]
    assert report["breakdowns"]["history"] == {
        "0": {"members": 15, "metrics": report["metrics"]}
    }  # cold start: every member has no training item
    assert "by training items: one group, 0, holds every member (the table above)" in output
    assert all(len(curve) == 5 for curve in report["curves"]["precision"].values())
    assert "15 cold-start members" in page.read_text(encoding="utf-8")
    assert not (path.parent / "cold.html").exists()


def test_the_html_report_goes_beside_the_json_by_default() -> None:
    assert html_path(Path("out/cold.json")) == Path("out/cold.html")
    assert html_path(Path("figures")) == Path("figures.html")
    assert html_path(Path("page.html")) == Path("page.html.html")


def test_a_dataset_brings_its_own_split(settings: Settings) -> None:
    result = runner.invoke(
        evaluate_app(settings), ["evaluate", "--dataset", str(EXAMPLE), "--cutoff", "2025-03-01"]
    )
    assert result.exit_code == 2
    assert "--cutoff" in result.output


def test_an_invalid_dataset_is_refused_before_anything_runs(
    settings: Settings, tmp_path: Path
) -> None:
    result = runner.invoke(evaluate_app(settings), ["evaluate", "--dataset", str(tmp_path)])
    assert isinstance(result.exception, EvaluationDataError)
    assert f"{tmp_path / 'members.csv'}: file not found" in str(result.exception)


@pytest.fixture
def community(settings: Settings) -> Settings:
    with Runtime(settings) as runtime:
        seed_demo(runtime, 120)
        run_cycle(runtime, NOW, lists=("nightly",))
    return settings


def test_the_workspace_is_split_in_time(community: Settings) -> None:
    output, report = _invoke(community)

    assert "warm members, k=10" in output
    split = report["split"]
    assert split["kind"] == "temporal" and split["test_share"] == 0.2
    counts = report["counts"]
    held_out = counts["test_interactions"] + counts["test_interactions_already_in_train"]
    assert 0.2 <= held_out / (held_out + counts["train_interactions"]) < 0.25
    assert counts["members"] == 120
    assert counts["evaluated_members"] == counts["warm_members"] > 0
    assert report["engine"]["embedding_model"] == "hashing-64"


def test_a_given_cutoff_and_cold_start(community: Settings) -> None:
    cutoff = "2026-10-01T00:00:00"
    _, report = _invoke(community, "--cold-start", "--cutoff", cutoff)

    assert report["split"] == {"kind": "temporal", "cutoff": "2026-10-01T00:00:00+00:00"}
    assert report["mode"] == "cold-start"
    assert report["counts"]["evaluated_members"] == report["counts"]["cold_start_members"]


def test_the_sandbox_holds_nothing_from_after_the_cutoff(community: Settings) -> None:
    cutoff = NOW - dt.timedelta(days=40)
    with Runtime(community) as runtime, runtime.session() as source:
        interactions = load_interactions(source)
        members = source.scalar(select(func.count()).select_from(Member))
        answers = source.scalar(select(func.count()).select_from(Answer))
        before = source.scalar(select(func.count()).where(ActivityEvent.occurred_at < cutoff))
        with nurture_sandbox(community, 10, workspace=community.workspace) as sandbox:
            with sandbox.session() as target:
                copied = stage_workspace(source, target, cutoff, (community.embedding_model,))
            with sandbox.session() as target:
                latest = target.scalar(select(func.max(ActivityEvent.occurred_at)))
                staged = target.scalar(select(func.count()).select_from(ActivityEvent))
    assert copied["members"] == members and copied["answers"] == answers
    assert staged == copied["activity_events"] == before > 0
    assert latest is not None and latest < cutoff
    assert any(event.occurred_at >= cutoff for event in interactions)


def test_a_workspace_without_activity_has_nothing_to_evaluate(settings: Settings) -> None:
    result = runner.invoke(evaluate_app(settings), ["evaluate"])
    assert isinstance(result.exception, EvaluationDataError)
    assert "no interaction with content" in str(result.exception)
