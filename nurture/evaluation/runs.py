"""One evaluation end to end: load and split the data, rank with the engine, score everything."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from nurture.embedding import cached_vector_names
from nurture.errors import Problem
from nurture.evaluation.ablation import ablation_variants, score_lists
from nurture.evaluation.breakdowns import breakdown_metrics, member_groups
from nurture.evaluation.data import EvaluationData, EvaluationDataError, Mode, temporal_cutoff
from nurture.evaluation.engine_signals import SandboxSignals
from nurture.evaluation.folder import load_dataset_folder, stage_folder
from nurture.evaluation.ranker import nurture_sandbox, rank_with_nurture
from nurture.evaluation.report import (
    CURVE_METRICS,
    ENGINE,
    EvaluationReport,
    lists_from_keys,
    rank_and_score,
    timings_of,
)
from nurture.evaluation.significance import compare_with_baselines
from nurture.evaluation.workspace import load_interactions, split_in_time, stage_workspace
from nurture.orchestration import CycleReport
from nurture.recommend import RankingWeights
from nurture.recommend.ranking_file import ranking_weight_sets, weight_changes
from nurture.runtime import Runtime, utc_now
from nurture.settings import Settings
from nurture.workspace import load_workspace_config

__all__ = ["DEFAULT_TEST_SHARE", "evaluate_folder", "evaluate_workspace"]

DEFAULT_TEST_SHARE = 0.2
"""Share of the workspace's interactions held out when no cut-off is given."""


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, found {k}")


def _report(
    settings: Settings,
    data: EvaluationData,
    lists: dict[str, list[str]],
    *,
    mode: Mode,
    k: int,
    dataset: dict[str, Any],
    engine: dict[str, Any],
    engine_seconds: float,
    ablation: dict[str, dict[str, float | None]] | None = None,
) -> EvaluationReport:
    rows = data.members_to_evaluate(mode)
    engine_lists = lists_from_keys(data, rows, lists, k)
    runs = rank_and_score(data, rows, engine_lists, k, settings.random_seed, engine_seconds)
    tested = data.test.members_with_any(data.n_members)
    trained = data.train.members_with_any(data.n_members)
    counts = {
        "members": data.n_members,
        "items": data.n_items,
        "recommendable_items": int(data.item_ok.sum()),
        "train_interactions": len(data.train),
        "test_interactions": len(data.test),
        "members_with_training_interactions": int(trained.sum()),
        "warm_members": int((tested & trained).sum()),
        "cold_start_members": int((tested & ~trained).sum()),
        "evaluated_members": len(rows),
        "evaluated_members_without_engine_items": int((engine_lists[:, 0] < 0).sum()),
        **data.counts,
    }
    return EvaluationReport(
        dataset=dataset,
        split=data.split,
        mode=mode,
        k=k,
        seed=settings.random_seed,
        counts=counts,
        metrics={name: run.summary(None, data.n_items, k) for name, run in runs.items()},
        created_at=utc_now(),
        engine=engine,
        breakdowns=breakdown_metrics(runs, member_groups(data, rows), data.n_items, k),
        curves={
            metric: {name: run.curve(metric) for name, run in runs.items()}
            for metric in CURVE_METRICS
        },
        timings=timings_of(runs),
        ablation=ablation or {},
        comparisons=compare_with_baselines(
            {name: run.per_member for name, run in runs.items()},
            engine=ENGINE,
            k=k,
            seed=settings.random_seed,
        ),
    )


def _engine_description(
    settings: Settings, cycle: CycleReport, weights: tuple[RankingWeights, RankingWeights]
) -> dict[str, Any]:
    segmentation = cycle.segmentation
    return {
        "stages": "nurture.stages.NIGHTLY on the training data",
        "embedding_model": settings.embedding_model,
        "embedding_backend": settings.embedding_backend,
        "library_embedding_backend": settings.library_embedding_backend,
        "segments": segmentation.n_segments if segmentation is not None else 0,
        "recommendations": cycle.recommendations,
        "ranking_weights": {
            "with_history": weight_changes(weights[0]),
            "without_history": weight_changes(weights[1]),
        },
    }


def _ablation(
    sandbox: Runtime,
    now: dt.datetime,
    data: EvaluationData,
    rows: Any,
    member_id_of: dict[str, int],
    weights: tuple[RankingWeights, RankingWeights],
    k: int,
) -> dict[str, dict[str, float | None]]:
    """Score the engine with each signal alone and each removed, on the members ``rows``."""
    signals = SandboxSignals(sandbox, now)
    keys = [data.member_keys[row] for row in rows]
    ids = [member_id_of[key] for key in keys]
    key_of = dict(zip(ids, keys, strict=True))
    with_history, without_history = (ablation_variants(group) for group in weights)
    out: dict[str, dict[str, float | None]] = {}
    for name, variant in with_history.items():
        lists = signals.rank_groups(ids, variant, without_history[name], k)
        out[name] = score_lists(
            data, rows, {key_of[member_id]: ranked for member_id, ranked in lists.items()}, k
        )
    return out


def evaluate_workspace(
    runtime: Runtime,
    *,
    mode: Mode = "warm",
    k: int = 10,
    cutoff: dt.datetime | None = None,
    test_share: float = DEFAULT_TEST_SHARE,
    weights: tuple[RankingWeights, RankingWeights] | None = None,
    ablation: bool = False,
) -> EvaluationReport:
    """Evaluate on the workspace's own data, split in time at ``cutoff``.

    The engine runs on a sandbox holding every member and their answers, and the activity
    before the cut-off (see :mod:`nurture.evaluation.workspace`); it and the baselines are
    scored on the interactions at or after it.

    Args:
        runtime: The runtime of the workspace and its database; its settings are in force
            (model, seed...).
        mode: ``warm`` scores members with interactions before the cut-off; ``cold-start``
            those without any.
        k: Cut-off of the ranked lists.
        cutoff: Time of the split (timezone-aware; a naive time is taken as UTC); none leaves
            the last ``test_share`` of interactions as test.
        test_share: Share held out when ``cutoff`` is none.
        weights: The ranking weights ``(with history, without history)``; those in force
            (the workspace's ``ranking.yaml`` and the settings) when none.
        ablation: Also score the engine with each signal alone and each removed.

    Returns:
        The report.

    Raises:
        EvaluationDataError: There is nothing to evaluate on.
        ValueError: ``k`` is below 1.
    """
    _check_k(k)
    if cutoff is not None and cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=dt.UTC)
    share = None
    settings = runtime.settings
    weights = weights or runtime.ranking_weight_sets
    ablated = None
    with nurture_sandbox(settings, k, workspace=settings.workspace, weights=weights) as sandbox:
        with runtime.session() as source, sandbox.session() as target:
            interactions = load_interactions(source)
            if not interactions:
                raise EvaluationDataError(
                    [Problem("activity", "the database holds no interaction with content")]
                )
            if cutoff is None:
                share = test_share
                cutoff = temporal_cutoff([event.occurred_at for event in interactions], share)
            names = cached_vector_names(
                settings.embedding_model,
                settings.embedding_backend,
                settings.library_embedding_backend,
            )
            stage_workspace(source, target, cutoff, names)
        started = time.perf_counter()
        ranking = rank_with_nurture(sandbox, cutoff)
        engine_seconds = time.perf_counter() - started
        choices = [
            question.key
            for question in runtime.workspace.questionnaire.questions
            if question.kind == "single_choice"
        ]
        with sandbox.session() as target:
            data = split_in_time(
                target, interactions, cutoff, test_share=share, choice_questions=choices
            )
        if ablation:
            rows = data.members_to_evaluate(mode)
            ids = {key: int(key) for key in data.member_keys}
            ablated = _ablation(sandbox, cutoff, data, rows, ids, weights, k)
    lists = {str(member_id): keys for member_id, keys in ranking.lists.items()}
    return _report(
        settings,
        data,
        lists,
        mode=mode,
        k=k,
        dataset={"source": "workspace", "workspace": str(settings.workspace.resolve())},
        engine=_engine_description(settings, ranking.cycle, weights),
        engine_seconds=engine_seconds,
        ablation=ablated,
    )


def evaluate_folder(
    settings: Settings,
    folder: Path,
    *,
    mode: Mode = "warm",
    k: int = 10,
    weights: tuple[RankingWeights, RankingWeights] | None = None,
    ablation: bool = False,
) -> EvaluationReport:
    """Evaluate on a dataset given as files (see ``docs/evaluation.md``).

    Args:
        settings: The settings in force (model, segmentation, seed...); of the workspace only
            its languages are used (the values a ``language`` column may hold), and its
            database not at all.
        folder: The dataset folder: ``members.csv``, ``items.csv``, ``train.csv``, ``test.csv``.
        mode: ``warm`` scores members with training interactions; ``cold-start`` those without.
        k: Cut-off of the ranked lists.
        weights: The ranking weights ``(with history, without history)``; those in force
            (the workspace's ``ranking.yaml`` and the settings) when none.
        ablation: Also score the engine with each signal alone and each removed.

    Returns:
        The report.

    Raises:
        EvaluationDataError: A file is missing or invalid; every problem is listed.
        ValueError: ``k`` is below 1.
    """
    _check_k(k)
    dataset = load_dataset_folder(
        folder, languages=load_workspace_config(settings.workspace).languages
    )
    weights = weights or ranking_weight_sets(settings)
    data = dataset.evaluation_data()
    ablated = None
    with nurture_sandbox(settings, k, weights=weights) as sandbox:
        member_ids = stage_folder(dataset, sandbox)
        started = time.perf_counter()
        ranking = rank_with_nurture(sandbox, dataset.now)
        engine_seconds = time.perf_counter() - started
        if ablation:
            rows = data.members_to_evaluate(mode)
            ablated = _ablation(sandbox, dataset.now, data, rows, member_ids, weights, k)
    key_of = {member_id: key for key, member_id in member_ids.items()}
    lists = {key_of[member_id]: keys for member_id, keys in ranking.lists.items()}
    return _report(
        settings,
        data,
        lists,
        mode=mode,
        k=k,
        dataset={"source": "folder", "path": str(folder)},
        engine=_engine_description(settings, ranking.cycle, weights),
        engine_seconds=engine_seconds,
        ablation=ablated,
    )
