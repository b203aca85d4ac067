"""Compare candidate newcomer ranking weights on validation splits whose newcomers look real.

``python -m benchmarks.newcomer_defaults`` carves a validation split from the *training* data
of each dataset and scores, on its validation newcomers, the baselines and nurture with each
candidate of :data:`CANDIDATES` (changes to :class:`nurture.recommend.RankingWeights`'
defaults, the without-history group's signals). Nothing reads a test split:

- ``--cold-start-dataset DIR``: the Stack Exchange converter's cold-start protocol applied to
  the training data (:func:`nurture.evaluation.carve_cold_start_validation`: members with a
  text who joined items someone else started, all their interactions taken away);
- ``--dataset DIR``: ``--tune``'s carve (:func:`nurture.evaluation.carve_validation`);
- ``--demo-data DIR``: the demo community before the evaluation's cut-off
  (:func:`nurture.evaluation.workspace_validation`; created in ``DIR`` when it holds no
  database, as ``benchmarks.choose_defaults`` does).

It prints P@k / nDCG@k per split (each ``--seed`` carves every split again) and the mean ratio
of each candidate to the best baseline, over every split and seed.

    python -m benchmarks.newcomer_defaults --cold-start-dataset /tmp/history
        --dataset examples/evaluation --cold-start-dataset examples/evaluation
        --demo-data /tmp/demo-data --seed 42 --seed 1 --seed 2
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.choose_defaults import CONTENT, DEMO_MEMBERS, _demo_settings
from nurture.evaluation import ValidationSplit, folder_validation, workspace_validation
from nurture.evaluation.ablation import score_lists
from nurture.evaluation.report import score_recommenders
from nurture.recommend import RankingWeights
from nurture.runtime import Runtime
from nurture.settings import DEFAULT_EMBEDDING_MODEL, Settings

__all__ = ["CANDIDATES", "main"]

_REJECTED = {
    "community_popularity": 1.0,
    "interest_half_life_days": 3650.0,
    "freshness": 0.0,
    "mmr_lambda": 1.0,
}
_PURE = {
    "member": 0.0,
    "history": 0.0,
    "co_engagement": 0.0,
    "collaborative": 0.0,
    "segment": 0.0,
    "format": 0.0,
}
_LONG_RUN = {"decay_popularity": False, "community_popularity": 1.0, "freshness": 0.0}
CANDIDATES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "community, 10-year half-life, by score (rejected)": _REJECTED,
    "long-run popularity alone": {**_PURE, **_LONG_RUN, "mmr_lambda": 1.0},
    **{
        f"long-run x{weight:g} + answers, by score": {
            **_LONG_RUN,
            "cold_start_popularity": weight,
            "mmr_lambda": 1.0,
        }
        for weight in (1.0, 2.0, 3.0, 5.0, 10.0)
    },
    "long-run x3 + answers, MMR 0.8": {**_LONG_RUN, "cold_start_popularity": 3.0},
    "segments' long-run x3 + answers, by score": {
        "decay_popularity": False,
        "freshness": 0.0,
        "cold_start_popularity": 3.0,
        "mmr_lambda": 1.0,
    },
}
"""The newcomer weight sets compared, as changes to ``RankingWeights()``."""


def _figures(split: ValidationSplit, k: int, seed: int) -> dict[str, tuple[float, float]]:
    """P@k and nDCG@k of the best baseline and of each candidate on the split's newcomers."""
    data = split.data
    rows = data.members_to_evaluate("cold-start")
    if not len(rows):
        return {}
    ids = [split.member_ids[data.member_keys[row]] for row in rows]
    metrics = (f"precision@{k}", f"ndcg@{k}")
    baselines = score_recommenders(data, rows, np.full((len(rows), k), -1, np.int64), k, seed)
    figures = {
        "best baseline": tuple(
            max((values.get(m) or 0.0) for name, values in baselines.items() if name != "nurture")
            for m in metrics
        )
    }
    key_of = {member_id: data.member_keys[row] for member_id, row in zip(ids, rows, strict=True)}
    for name, change in CANDIDATES.items():
        lists = split.signals.rank(ids, RankingWeights(**change), k)
        scored = score_lists(data, rows, {key_of[i]: ranked for i, ranked in lists.items()}, k)
        figures[name] = tuple(scored.get(m) or 0.0 for m in metrics)
    return figures  # type: ignore[return-value]


def _splits(
    args: argparse.Namespace, settings: Settings, seed: int
) -> Iterator[tuple[str, contextlib.AbstractContextManager[ValidationSplit]]]:
    """Each validation split of the arguments for ``seed``, carved when entered."""
    for folder in args.cold_start_dataset:
        yield (
            f"{folder} (cold-start protocol, seed {seed})",
            folder_validation(settings, folder, k=args.k, seed=seed, cold_start_protocol=True),
        )
    for folder in args.dataset:
        yield (
            f"{folder} (--tune's carve, seed {seed})",
            folder_validation(settings, folder, k=args.k, seed=seed),
        )
    if args.demo_data is not None:
        yield f"demo (seed {seed})", _demo_validation(args.demo_data, args.k, seed)


@contextlib.contextmanager
def _demo_validation(data_dir: Path, k: int, seed: int) -> Iterator[ValidationSplit]:
    """The demo community's validation split, the community created first if need be."""
    fresh = not (data_dir / "nurture.db").exists()
    with Runtime(_demo_settings(data_dir)) as runtime:
        if fresh:
            from tests.pipeline_helpers import seed_demo

            seed_demo(runtime, DEMO_MEMBERS)
        start = (RankingWeights(), RankingWeights())
        with workspace_validation(runtime, k=k, seed=seed, start=start) as split:
            yield split


def main(argv: list[str] | None = None) -> None:
    """Carve the validation splits, score the candidates and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, action="append", default=[])
    parser.add_argument("--cold-start-dataset", type=Path, action="append", default=[])
    parser.add_argument("--demo-data", type=Path, default=None)
    parser.add_argument("--seed", type=int, action="append", default=[])
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    settings = Settings(workspace=CONTENT, embedding_model=DEFAULT_EMBEDDING_MODEL)
    ratios: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    for seed in args.seed or [42]:
        for label, carving in _splits(args, settings, seed):
            with carving as split:
                figures = _figures(split, args.k, seed)
                members = len(split.data.members_to_evaluate("cold-start"))
            print(f"{label}: {members} validation newcomers (P@{args.k} / nDCG@{args.k})")
            best = figures.get("best baseline", (0.0, 0.0))
            for name, (precision, ndcg) in figures.items():
                print(f"  {name:50s} {precision:.4f} / {ndcg:.4f}", flush=True)
                if name in ratios:
                    ratios[name].extend(
                        value / top
                        for value, top in zip((precision, ndcg), best, strict=True)
                        if top > 0
                    )
    print("mean ratio to the best baseline:")
    for name, values in ratios.items():
        print(f"  {name:50s} {float(np.mean(values)) if values else float('nan'):.3f}")


if __name__ == "__main__":
    main()
