"""Search candidate default ranking weights on validation splits of several datasets at once.

``python -m benchmarks.choose_defaults`` carves a validation split from the *training* data of
each dataset (:func:`nurture.evaluation.folder_validation`: ``test.csv`` is never opened;
:func:`nurture.evaluation.workspace_validation` for the demo community: nothing after the
evaluation's cut-off is read), scores the baselines on each split, and runs
:func:`nurture.evaluation.tune_jointly`: one seeded search per group of members whose objective
is the mean ratio of nurture's P@k and nDCG@k to the best baseline's, over every split. The
search starts from :class:`nurture.recommend.RankingWeights`' own defaults, not from the
shipped ones. It prints the figures and the candidate weights for
``nurture.recommend.ranking_file.DEFAULT_WEIGHTS``, and writes them as a ranking weights file
with ``--output``; a candidate is shipped only when one ordinary ``nurture evaluate`` of it on
the test splits is at least as good as the shipped weights (the last one was not; see
docs/evaluation.md, "Measured").

    python -m benchmarks.choose_defaults --dataset examples/evaluation --dataset /tmp/history
        --demo-data /tmp/demo-data --trials 200 --output /tmp/defaults.yaml

``--demo-data DIR`` uses (or, when it holds no database yet, creates) the demo community of
docs/evaluation.md: 1 000 members, seed 3 (``tests.pipeline_helpers.seed_demo``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from nurture.evaluation import folder_validation, tune_jointly, workspace_validation
from nurture.recommend import RankingWeights, write_ranking_file
from nurture.recommend.ranking_file import weight_changes
from nurture.runtime import Runtime
from nurture.settings import DEFAULT_EMBEDDING_MODEL, Settings

__all__ = ["main"]

CONTENT = Path(__file__).resolve().parents[1] / "content"
DEMO_MEMBERS = 1000


def main(argv: list[str] | None = None) -> None:
    """Run the joint search and print (and optionally write) the weights it found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, action="append", default=[])
    parser.add_argument("--demo-data", type=Path, default=None)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = Settings(workspace=CONTENT, embedding_model=DEFAULT_EMBEDDING_MODEL)
    start = RankingWeights()
    with contextlib.ExitStack() as stack:
        splits = [
            stack.enter_context(folder_validation(settings, folder, k=args.k, seed=args.seed))
            for folder in args.dataset
        ]
        if args.demo_data is not None:
            fresh = not (args.demo_data / "nurture.db").exists()
            runtime = stack.enter_context(Runtime(_demo_settings(args.demo_data)))
            if fresh:
                from tests.pipeline_helpers import seed_demo

                seed_demo(runtime, DEMO_MEMBERS)
            splits.append(
                stack.enter_context(
                    workspace_validation(runtime, k=args.k, seed=args.seed, start=(start, start))
                )
            )
        result = tune_jointly(splits, (start, start), k=args.k, trials=args.trials, seed=args.seed)
    print(json.dumps(result.to_dict()["groups"], indent=1, default=str))
    with_history, without_history = result.weights()
    print(
        "DEFAULT_WEIGHTS =",
        {
            "with_history": weight_changes(with_history),
            "without_history": weight_changes(without_history),
        },
    )
    if args.output is not None:
        write_ranking_file(
            args.output,
            with_history,
            without_history,
            comment="Chosen by benchmarks/choose_defaults.py on validation splits of "
            + ", ".join([*map(str, args.dataset), *(["the demo"] if args.demo_data else [])]),
        )


def _demo_settings(data_dir: Path) -> Settings:
    data_dir.mkdir(parents=True, exist_ok=True)
    return Settings(
        workspace=CONTENT,
        data_dir=data_dir,
        embedding_model=DEFAULT_EMBEDDING_MODEL,
        database_url=f"sqlite:///{data_dir}/nurture.db",
    )


if __name__ == "__main__":
    main()
