"""``nurture evaluate --tune``: the validation split, the search, and never a look at the test."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sqlalchemy import delete
from typer.testing import CliRunner

from nurture.evaluation import (
    SEARCH_SPACES,
    carve_cold_start_validation,
    carve_validation,
    folder_validation,
    load_dataset_folder,
    propose_weights,
    search_weights,
    tune_folder,
    tune_jointly,
    tune_workspace,
)
from nurture.evaluation.workspace import WorkspaceInteraction, load_interactions
from nurture.orchestration import run_cycle
from nurture.recommend import (
    RankingWeights,
    learn_co_engagement,
    load_ranking_file,
    rank_content,
)
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import ActivityEvent
from tests.evaluation.conftest import EXAMPLE, evaluate_app
from tests.pipeline_helpers import NOW, seed_demo

runner = CliRunner()


def load_interactions_of(runtime: Runtime) -> list[WorkspaceInteraction]:
    with runtime.session() as session:
        return load_interactions(session)


def _folder(tmp_path: Path, train: str, members: str | None = None) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "members.csv").write_text(
        members or "id,text\nm1,\nm2,\nm3,\nm4,\nm5,\nm6,\n", encoding="utf-8"
    )
    (folder / "items.csv").write_text(
        "id,title\n" + "".join(f"i{n},Item {n}\n" for n in range(1, 9)), encoding="utf-8"
    )
    (folder / "train.csv").write_text("member_id,item_id,timestamp\n" + train, encoding="utf-8")
    (folder / "test.csv").write_text("member_id,item_id\nm1,i8\n", encoding="utf-8")
    return folder


def _pairs(interactions: object, dataset: object) -> set[tuple[str, str]]:
    members = dataset.member_ids  # type: ignore[attr-defined]
    items = dataset.item_ids  # type: ignore[attr-defined]
    return {
        (members[m], items[i])
        for m, i in zip(interactions.member, interactions.item, strict=True)  # type: ignore[attr-defined]
    }


def test_the_validation_holds_out_each_members_last_interactions_and_some_newcomers(
    tmp_path: Path,
) -> None:
    train = "".join(
        f"m{member},i{item},2025-01-{day:02d}\n"
        for member in range(1, 7)
        for day, item in enumerate(range(1, 6), start=1)
    )
    dataset = load_dataset_folder(_folder(tmp_path, train), with_test=False)
    assert len(dataset.test) == 0

    carved = carve_validation(dataset, share=0.2, newcomer_share=0.2, seed=3)
    held = _pairs(carved.test, carved)
    kept = _pairs(carved.train, carved)
    newcomers = {member for member in dataset.member_ids if not any(m == member for m, _ in kept)}
    assert len(newcomers) == 1  # round(0.2 * 6)
    (newcomer,) = newcomers
    assert {item for member, item in held if member == newcomer} == {f"i{n}" for n in range(1, 6)}
    for member in set(dataset.member_ids) - newcomers:  # the last of five, in time order
        assert {item for m, item in held if m == member} == {"i5"}
        assert {item for m, item in kept if m == member} == {"i1", "i2", "i3", "i4"}
    assert len(carved.train) + len(carved.test) == len(dataset.train)
    assert len(carved.train_times) == len(carved.train)
    again = carve_validation(dataset, seed=3)  # seeded
    assert _pairs(again.train, again) == kept and _pairs(again.test, again) == held


def test_newcomers_are_drawn_like_the_members_to_rank_and_repeats_are_dropped(
    tmp_path: Path,
) -> None:
    # m6 has no training interaction and a text: newcomers to rank are known by a text, so the
    # validation's newcomers are drawn among the members with one (m1, m2).
    members = "id,text\nm1,likes history\nm2,ancient rome\nm3,\nm4,\nm5,\nm6,a newcomer\n"
    train = (
        "m1,i1,2025-01-01\nm1,i2,2025-01-02\nm2,i1,2025-01-01\nm2,i2,2025-01-02\n"
        "m3,i1,2025-01-01\nm3,i2,2025-01-02\nm3,i1,2025-01-03\n"
        "m4,i3,2025-01-01\nm5,i3,2025-01-01\n"
    )
    dataset = load_dataset_folder(_folder(tmp_path, train, members), with_test=False)
    carved = carve_validation(dataset, newcomer_share=0.4, seed=1)
    kept_members = {dataset.member_ids[m] for m in carved.train.member}
    assert len({"m1", "m2"} - kept_members) == 1
    assert {"m3", "m4", "m5"} <= kept_members
    # m3's last interaction repeats an item it keeps: held out of training, not validated on.
    assert ("m3", "i1") in _pairs(carved.train, carved)
    assert ("m3", "i1") not in _pairs(carved.test, carved)


def test_the_validation_refuses_test_interactions(tmp_path: Path) -> None:
    dataset = load_dataset_folder(_folder(tmp_path, "m1,i1,2025-01-01\n"))
    with pytest.raises(ValueError, match="training data only"):
        carve_validation(dataset)


def test_the_cold_start_carve_holds_out_members_who_joined_others_items(
    tmp_path: Path,
) -> None:
    # i1 is started by m1, i2 by m2, i3 by m4; m1..m4 have a text, m5 does not. Eligible: the
    # described members with an interaction on an item someone else started: m1 (i2), m2 (i1)
    # and m3 (i1, i2), not m4 (only its own i3) nor m5 (no text).
    members = "id,text\nm1,a\nm2,b\nm3,c\nm4,d\nm5,\nm6,\n"
    train = (
        "m1,i1,2025-01-01\nm2,i2,2025-01-02\nm2,i1,2025-01-03\nm1,i2,2025-01-04\n"
        "m3,i1,2025-01-05\nm3,i2,2025-01-06\nm4,i3,2025-01-01\nm5,i1,2025-01-07\n"
        "m5,i3,2025-01-08\n"
    )
    dataset = load_dataset_folder(_folder(tmp_path, train, members), with_test=False)
    drawn = set()
    for seed in range(20):
        carved = carve_cold_start_validation(dataset, share=0.34, seed=seed)
        kept_members = {dataset.member_ids[m] for m in carved.train.member}
        (newcomer,) = {"m1", "m2", "m3", "m4", "m5"} - kept_members  # round(0.34 * 3)
        drawn.add(newcomer)
        started = {"m1": "i1", "m2": "i2"}.get(newcomer)
        own = {item for member, item in _pairs(dataset.train, dataset) if member == newcomer}
        # every interaction of the newcomer leaves training; the items it started are not tested
        assert _pairs(carved.test, carved) == {(newcomer, item) for item in own if item != started}
        assert len(carved.train) == len(dataset.train) - len(own)
        assert len(carved.train_times) == len(carved.train)
    assert drawn == {"m1", "m2", "m3"}
    with pytest.raises(ValueError, match="training data only"):
        carve_cold_start_validation(load_dataset_folder(tmp_path / "data"))  # with test.csv


def test_the_search_finds_a_known_better_weight_set() -> None:
    # Validation figure peaking at history 0.9, co_engagement 0: the search must move there.
    def score(weights: RankingWeights) -> float:
        return -((weights.history - 0.9) ** 2) - weights.co_engagement**2

    start = RankingWeights()
    found = search_weights(score, start, SEARCH_SPACES["with_history"], trials=80, seed=5)
    assert found.start == start
    assert found.best_score > found.start_score
    assert abs(found.best.history - 0.9) < abs(start.history - 0.9)
    assert found.best.co_engagement < start.co_engagement
    again = search_weights(score, start, SEARCH_SPACES["with_history"], trials=80, seed=5)
    assert again == found


def test_the_search_keeps_the_start_when_nothing_beats_it() -> None:
    start = RankingWeights()
    found = search_weights(
        lambda _: 1.0, start, SEARCH_SPACES["without_history"], trials=10, seed=0
    )
    assert found.best == start
    with pytest.raises(ValueError, match="trials"):
        search_weights(lambda _: 1.0, start, SEARCH_SPACES["without_history"], trials=0, seed=0)


def test_proposals_stay_in_their_ranges() -> None:
    rng = np.random.default_rng(0)
    best = RankingWeights()
    for group, space in SEARCH_SPACES.items():
        for _ in range(200):
            proposal = propose_weights(rng, best, space)  # validated: a range error raises
            for name, bounds in space.items():
                value = getattr(proposal, name)
                if isinstance(bounds[0], float) and len(bounds) == 2:
                    assert bounds[0] <= value <= bounds[1], (group, name, value)
                else:
                    assert value in bounds, (group, name, value)


@pytest.mark.parametrize(
    ("group", "field"),
    [
        ("with_history", "unscored_items_by_content"),
        ("with_history", "decay_popularity"),
        ("without_history", "decay_popularity"),
    ],
)
def test_the_search_tries_turning_an_on_switch_off(group: str, field: str) -> None:
    space = SEARCH_SPACES[group]
    assert set(space[field]) == {True, False}
    start = RankingWeights()
    assert getattr(start, field) is True

    def score(weights: RankingWeights) -> float:
        return 0.0 if getattr(weights, field) else 1.0

    found = search_weights(score, start, space, trials=30, seed=1)
    assert getattr(found.best, field) is False
    assert found.best_score == 1.0


def _rank_with_and_without_content_for_unscored(
    history: sp.csr_matrix,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    m, n, d = history.shape[0], history.shape[1], 8
    items = rng.normal(size=(n, d))
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    members, columns = np.nonzero(rng.random((60, n)) < 0.2)
    keep = columns < n - 6  # the last 6 items: nobody engaged with them
    co = learn_co_engagement(members[keep], columns[keep], n, neighbours=8)
    interest = rng.normal(size=(m, d))
    interest /= np.linalg.norm(interest, axis=1, keepdims=True)

    def rank(by_content: bool) -> tuple[np.ndarray, np.ndarray]:
        return rank_content(
            interest,
            np.zeros((m, d)),
            np.asarray(history.toarray() > 0),
            items.astype(np.float32),
            np.ones((m, n), dtype=bool),
            np.zeros(n),
            RankingWeights(unscored_items_by_content=by_content),
            5,
            np.ones(n),
            history=history,
            co_engagement=co,
        )

    return rank(True), rank(False)


def test_unscored_items_by_content_cannot_change_a_newcomers_list() -> None:
    # Why the newcomers' search leaves it out: the weight it moves is a newcomer's only once
    # they have co-engagement or the learned model, which needs a history.
    assert "unscored_items_by_content" not in SEARCH_SPACES["without_history"]
    newcomers = sp.csr_matrix((8, 30))
    (on, on_scores), (off, off_scores) = _rank_with_and_without_content_for_unscored(newcomers)
    assert on.tolist() == off.tolist()
    assert np.allclose(on_scores, off_scores, equal_nan=True)
    # The same members with a history: the setting does change their lists.
    regulars = sp.csr_matrix(np.eye(8, 30) + np.eye(8, 30, k=3))
    (on, _), (off, _) = _rank_with_and_without_content_for_unscored(regulars)
    assert on.tolist() != off.tolist()


def _example_without_test(tmp_path: Path, test: bytes | None) -> Path:
    folder = tmp_path / "example"
    folder.mkdir(parents=True)
    for name in ("members.csv", "items.csv", "train.csv"):
        shutil.copy(EXAMPLE / name, folder / name)
    if test is not None:
        (folder / "test.csv").write_bytes(test)
    return folder


def test_tuning_never_reads_the_test_split(settings: Settings, tmp_path: Path) -> None:
    with_test = _example_without_test(tmp_path / "a", (EXAMPLE / "test.csv").read_bytes())
    without = _example_without_test(tmp_path / "b", None)
    poisoned = _example_without_test(tmp_path / "c", b"\xff\xfe not a csv at all\x00")
    start = (RankingWeights(), RankingWeights())

    results = [
        tune_folder(settings, folder, trials=6, start=start).to_dict()
        for folder in (with_test, without, poisoned)
    ]
    for result in results:
        result.pop("dataset")
    assert results[0] == results[1] == results[2]
    groups = results[0]["groups"]
    assert groups["with_history"]["members"] > 0
    assert groups["without_history"]["members"] > 0
    for group in groups.values():
        objective = [
            group[name]["precision@10"] + group[name]["ndcg@10"]
            for name in ("start_metrics", "best_metrics")
        ]
        assert objective[1] >= objective[0]


def test_the_joint_search_pools_validation_splits_without_reading_the_tests(
    settings: Settings, tmp_path: Path
) -> None:
    real = _example_without_test(tmp_path / "a", (EXAMPLE / "test.csv").read_bytes())
    poisoned = _example_without_test(tmp_path / "b", b"\xff\xfe not a csv at all\x00")
    missing = _example_without_test(tmp_path / "c", None)
    start = (RankingWeights(), RankingWeights())

    def joint(folders: tuple[Path, Path]) -> dict[str, object]:
        with contextlib.ExitStack() as stack:
            splits = [
                stack.enter_context(folder_validation(settings, folder, seed=seed))
                for folder, seed in zip(folders, (42, 7), strict=True)
            ]
            result = tune_jointly(splits, start, trials=6, seed=42).to_dict()
        for group in result["groups"].values():  # the split names are the folders
            group["figures"] = list(group["figures"].values())
        return result

    result = joint((real, poisoned))
    assert result == joint((missing, missing))
    for group in result["groups"].values():
        assert len(group["figures"]) == 2  # both splits have members of each group
        assert group["best_score"] >= group["start_score"]
        ratios = [
            figures[f"best {name}"] / figures[f"baseline {name}"]
            for figures in group["figures"]
            for name in ("precision@10", "ndcg@10")
            if figures[f"baseline {name}"] > 0
        ]
        assert ratios and group["best_score"] == pytest.approx(float(np.mean(ratios)))


def test_the_cli_tunes_and_writes_the_file_the_workspace_reads(
    settings: Settings, tmp_path: Path
) -> None:
    target = tmp_path / "ws" / "ranking.yaml"
    result = runner.invoke(
        evaluate_app(settings),
        [
            "evaluate",
            "--dataset",
            str(_example_without_test(tmp_path, None)),
            "--tune",
            "--trials",
            "4",
            "--output-weights",
            str(target),
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "test.csv not read" in result.output
    assert "with history" in result.output and "without history" in result.output
    tuned = load_ranking_file(target)
    assert isinstance(tuned.with_history, RankingWeights)
    assert target.read_text(encoding="utf-8").startswith("# Written by `nurture evaluate --tune`")

    output = tmp_path / "report.json"
    result = runner.invoke(
        evaluate_app(settings),
        ["evaluate", "--dataset", str(EXAMPLE), "--weights", str(target), "-o", str(output)],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    engine = json.loads(output.read_text(encoding="utf-8"))["engine"]
    assert engine["ranking_weights"]["with_history"] == {
        name: value
        for name, value in tuned.with_history.model_dump().items()
        if RankingWeights().model_dump()[name] != value
    }


def test_the_workspace_is_tuned_on_its_activity_before_the_cutoff(
    settings: Settings, tmp_path: Path
) -> None:
    with Runtime(settings) as runtime:
        seed_demo(runtime, 80)
        run_cycle(runtime, NOW, lists=("nightly",))
        interactions = load_interactions_of(runtime)
        cutoff = max(event.occurred_at for event in interactions) - dt.timedelta(days=20)
        start = (RankingWeights(), RankingWeights())
        result = tune_workspace(runtime, trials=4, start=start, cutoff=cutoff)
        # The activity from the cut-off on cannot change it: erased, the result is the same.
        with runtime.session() as session:
            session.execute(delete(ActivityEvent).where(ActivityEvent.occurred_at >= cutoff))
            session.commit()
        again = tune_workspace(runtime, trials=4, start=start, cutoff=cutoff)
    assert result.to_dict() == again.to_dict()
    assert result.counts["validation_interactions"] > 0
    assert result.groups["with_history"].members > 0
    assert result.groups["without_history"].members > 0
    before = sum(1 for event in interactions if event.occurred_at < cutoff)
    assert result.counts["training_interactions"] + result.counts["validation_interactions"] <= (
        before
    )

    target = tmp_path / "ranking.yaml"
    output = runner.invoke(
        evaluate_app(settings),
        ["evaluate", "--tune", "--trials", "2", "--output-weights", str(target)],
    )
    assert output.exit_code == 0, (output.output, output.exception)
    assert "activity at or after the cut-off not read" in output.output
    assert load_ranking_file(target).with_history is not None


def test_the_ablation_scores_each_signal_alone_and_removed(
    settings: Settings, tmp_path: Path
) -> None:
    output = tmp_path / "report.json"
    result = runner.invoke(
        evaluate_app(settings),
        ["evaluate", "--dataset", str(EXAMPLE), "--ablation", "-o", str(output)],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "ablation" in result.output
    report = json.loads(output.read_text(encoding="utf-8"))
    variants = report["ablation"]
    for signal in ("member", "history", "co_engagement", "collaborative", "segment", "popularity"):
        assert f"only {signal}" in variants and f"without {signal}" in variants
    # Removing the format bonus changes nothing here (no member states a format): the full engine.
    assert variants["without format"]["ndcg@10"] == report["metrics"]["nurture"]["ndcg@10"]
    assert variants["only popularity"] != variants["only history"]
