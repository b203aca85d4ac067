"""Ranking weights learned, not guessed: a seeded search on a validation split of the training data.

``nurture evaluate --tune`` reads a dataset folder's *training* interactions only (``test.csv``
is never opened: :func:`~nurture.evaluation.folder.load_dataset_folder` with
``with_test=False``) and carves a validation split from them (:func:`carve_validation`):

- **newcomers**: a seeded share of the members with training interactions lose all of them
  (they look like members who just joined: only their answers or text are known); their
  interactions are their validation;
- **members with a history**: every other member with at least two training interactions holds
  out the last ``ceil(share · n)`` of them, in time order.

The nightly stages run once on the rest (:func:`~nurture.evaluation.rank_with_nurture`), the
ranking signals are loaded once per half-life (:class:`SandboxSignals`), then a seeded search
(:func:`search_weights`) tries weight sets for each group apart, each scored by
``precision@k + nDCG@k`` on that group's validation members; the weights in force are the first
trial, so the result is never worse than them on validation. The two best sets are written as a
ranking weights file (:func:`nurture.recommend.write_ranking_file`) that the workspace reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nurture.embedding import cached_vector_names
from nurture.errors import Problem
from nurture.evaluation.ablation import score_lists
from nurture.evaluation.data import EvaluationData, EvaluationDataError, temporal_cutoff
from nurture.evaluation.engine_signals import SandboxSignals
from nurture.evaluation.folder import FolderDataset, load_dataset_folder, stage_folder
from nurture.evaluation.ranker import nurture_sandbox, rank_with_nurture
from nurture.evaluation.report import score_recommenders
from nurture.evaluation.workspace import load_interactions, split_in_time, stage_workspace
from nurture.recommend import RankingWeights
from nurture.recommend.ranking_file import ranking_weight_sets
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.workspace import load_workspace_config

__all__ = [
    "SEARCH_SPACES",
    "GroupTuning",
    "JointGroupTuning",
    "JointTuning",
    "SearchResult",
    "TuningResult",
    "ValidationSplit",
    "carve_cold_start_validation",
    "carve_validation",
    "folder_validation",
    "propose_weights",
    "search_weights",
    "tune_folder",
    "tune_jointly",
    "tune_workspace",
    "workspace_validation",
]

Group = Literal["with_history", "without_history"]

_HALF_LIVES = (30.0, 90.0, 365.0, 3650.0)

SEARCH_SPACES: dict[str, dict[str, tuple[float, float] | tuple[Any, ...]]] = {
    "with_history": {
        "member": (0.0, 1.0),
        "history": (0.0, 1.0),
        "co_engagement": (0.0, 1.0),
        "collaborative": (0.0, 1.0),
        "segment": (0.0, 0.5),
        "popularity": (0.0, 1.0),
        "community_popularity": (0.0, 1.0),
        "freshness": (0.0, 0.3),
        "mmr_lambda": (0.5, 1.0),
        "interest_half_life_days": _HALF_LIVES,
        "centre_history": (True, False),
        "unscored_items_by_content": (True, False),
        "decay_popularity": (True, False),
    },
    "without_history": {
        # A newcomer lacks history, co-engagement and the learned model: their weights only
        # add to the personal share the member's other signals split (see RankingWeights).
        # For the same reason unscored_items_by_content cannot change a newcomer's list (the
        # weight it moves is theirs only when they have those signals): it is not searched.
        "member": (0.0, 1.0),
        "history": (0.0, 1.0),
        "co_engagement": (0.0, 1.0),
        "collaborative": (0.0, 1.0),
        "segment": (0.0, 0.5),
        "cold_start_popularity": (0.0, 3.0),
        "community_popularity": (0.0, 1.0),
        "freshness": (0.0, 0.3),
        "mmr_lambda": (0.5, 1.0),
        "interest_half_life_days": _HALF_LIVES,
        "decay_popularity": (True, False),
    },
}
"""What the search tries, per group: a ``(low, high)`` range, or a tuple of choices (a tuple
of booleans, or of more than two values, is a set of choices)."""

_LOCAL_SHARE = 0.5  # share of the trials that change a few fields of the best so far


def _is_range(space: tuple[Any, ...]) -> bool:
    return len(space) == 2 and all(
        isinstance(value, float) and not isinstance(value, bool) for value in space
    )


def _draw(rng: np.random.Generator, space: tuple[Any, ...]) -> Any:
    if _is_range(space):
        low, high = space
        if low == 0.0 and rng.random() < 0.2:  # a signal switched off is worth trying
            return 0.0
        return round(float(rng.uniform(low, high)), 3)
    return space[int(rng.integers(len(space)))]


def propose_weights(
    rng: np.random.Generator, best: RankingWeights, space: Mapping[str, tuple[Any, ...]]
) -> RankingWeights:
    """A new weight set to try: all fields drawn afresh, or a few changed from ``best``.

    Args:
        rng: The random generator (seeded by the caller).
        best: The best weights found so far.
        space: The fields searched and their ranges or choices (:data:`SEARCH_SPACES`).

    Returns:
        The weights to try.
    """
    names = list(space)
    if rng.random() < _LOCAL_SHARE:
        count = int(rng.integers(1, min(3, len(names)) + 1))
        chosen = [names[int(i)] for i in rng.choice(len(names), size=count, replace=False)]
        update: dict[str, Any] = {}
        for name in chosen:
            field_space = space[name]
            current = getattr(best, name)
            if _is_range(field_space) and current > 0 and rng.random() < 0.7:
                low, high = field_space
                moved = current * math.exp(float(rng.normal(0.0, 0.5)))
                update[name] = round(min(max(moved, low), high), 3)
            else:
                update[name] = _draw(rng, field_space)
        return best.model_copy(update=update)
    return best.model_copy(update={name: _draw(rng, space[name]) for name in names})


@dataclass(frozen=True)
class SearchResult:
    """What a search found.

    Attributes:
        start: The weights it started from (the first trial).
        start_score: Their score.
        best: The best weights tried.
        best_score: Their score.
        trials: Weight sets tried, the start included.
    """

    start: RankingWeights
    start_score: float
    best: RankingWeights
    best_score: float
    trials: int


def search_weights(
    score: Callable[[RankingWeights], float],
    start: RankingWeights,
    space: Mapping[str, tuple[Any, ...]],
    *,
    trials: int,
    seed: int,
) -> SearchResult:
    """Search the weights that maximise ``score``: ``start`` first, then seeded proposals.

    A proposal replaces the best only when it scores strictly higher, so ties keep ``start``.

    Args:
        score: Higher is better (the validation figure of a weight set).
        start: The weights in force: the first trial.
        space: The fields searched (:data:`SEARCH_SPACES`).
        trials: Weight sets tried in all, ``start`` included (at least 1).
        seed: Seed of the proposals: the same seed gives the same search.

    Returns:
        The best weights and their score, next to the start's.

    Raises:
        ValueError: ``trials`` is below 1.
    """
    if trials < 1:
        raise ValueError(f"trials must be at least 1, found {trials}")
    rng = np.random.default_rng(seed)
    start_score = score(start)
    best, best_score = start, start_score
    tried = {start}
    for _ in range(trials - 1):
        candidate = propose_weights(rng, best, space)
        if candidate in tried:
            continue
        tried.add(candidate)
        value = score(candidate)
        if value > best_score:
            best, best_score = candidate, value
    return SearchResult(start, start_score, best, best_score, len(tried))


def carve_validation(
    dataset: FolderDataset,
    *,
    share: float = 0.2,
    newcomer_share: float = 0.2,
    seed: int = 42,
) -> FolderDataset:
    """A validation split of a dataset's training interactions: newcomers and held-out tails.

    Of the members with training interactions, ``newcomer_share`` (seeded; among those with
    a text or attributes when the members without training interactions have some, since
    those are the newcomers to rank) lose them all: they are the validation newcomers. Every
    other member with ``n >= 2`` interactions holds out their last ``ceil(share · n)`` (by
    time, then file order); a held-out interaction with an item the member keeps in training
    is dropped.

    Args:
        dataset: A dataset read without its test interactions (``with_test=False``).
        share: Share of each member's interactions held out.
        newcomer_share: Share of the members with interactions made newcomers.
        seed: Seed of the choice of newcomers.

    Returns:
        The dataset with training = what is left, test = the validation interactions.

    Raises:
        ValueError: ``dataset`` holds test interactions (tuning must never see them), or a
            share is not in ``(0, 1)``.
    """
    if len(dataset.test):
        raise ValueError("carve_validation takes the training data only: read it with_test=False")
    _check_shares(share, newcomer_share)
    train = dataset.train
    n_members = len(dataset.member_ids)
    counts = np.bincount(train.member, minlength=n_members)

    def described(row: int) -> bool:
        cells = dataset.member_cells[row]
        return any(value.strip() for key, value in cells.items() if key not in ("id", "language"))

    pool = np.flatnonzero(counts > 0)
    if any(described(row) for row in np.flatnonzero(counts == 0).tolist()):
        with_text = np.array([row for row in pool.tolist() if described(row)], dtype=np.int64)
        if with_text.size >= 2:
            pool = with_text
    times = np.array([moment.timestamp() for moment in dataset.train_times], dtype=np.float64)
    keep, validation = _carve(
        train.member, train.item, times, pool, share, newcomer_share, np.random.default_rng(seed)
    )
    return dataclasses.replace(
        dataset,
        train=train.select(keep),
        test=train.select(validation),
        train_times=[
            moment for moment, kept in zip(dataset.train_times, keep, strict=True) if kept
        ],
    )


def carve_cold_start_validation(
    dataset: FolderDataset, *, share: float = 0.2, seed: int = 42
) -> FolderDataset:
    """A validation split of newcomers drawn the way the Stack Exchange converter draws them.

    :func:`carve_validation`'s newcomers are members whose interactions were taken away, the
    ones they started included; the converter's cold-start protocol
    (:func:`nurture.evaluation.stackexchange.cold_start_split`) holds out members with a text
    who joined someone else's item, and tests only those interactions. Here the same protocol
    runs on the training interactions: the member who started an item (its earliest training
    interaction, by time then file order: on Stack Exchange, the asker) is its author. Eligible
    members have a text or attributes and an interaction with an item someone else started; a
    seeded ``share`` of them lose every interaction, and their interactions with items they did
    not start are the validation. Every other member keeps all of theirs (nobody with a history
    is scored).

    Args:
        dataset: A dataset read without its test interactions (``with_test=False``).
        share: Share of the eligible members made newcomers.
        seed: Seed of the draw.

    Returns:
        The dataset with training = the other members' interactions, test = the newcomers'
        interactions with items they did not start.

    Raises:
        ValueError: ``dataset`` holds test interactions, or ``share`` is not in ``(0, 1)``.
    """
    if len(dataset.test):
        raise ValueError(
            "carve_cold_start_validation takes the training data only: read it with_test=False"
        )
    _check_shares(share, share)
    train = dataset.train
    members = np.asarray(train.member, dtype=np.int64)
    items = np.asarray(train.item, dtype=np.int64)
    times = np.array([moment.timestamp() for moment in dataset.train_times], dtype=np.float64)
    order = np.lexsort((np.arange(len(items)), times, items))
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = items[order][1:] != items[order][:-1]
    author = np.full(len(dataset.item_ids), -1, dtype=np.int64)
    author[items[order][starts]] = members[order][starts]
    joined = author[items] != members  # an interaction with an item someone else started

    def described(row: int) -> bool:
        cells = dataset.member_cells[row]
        return any(value.strip() for key, value in cells.items() if key not in ("id", "language"))

    eligible = np.array(
        [row for row in np.unique(members[joined]).tolist() if described(row)], dtype=np.int64
    )
    drawn = np.random.default_rng(seed).permutation(eligible)[: round(share * len(eligible))]
    held = np.isin(members, drawn)
    return dataclasses.replace(
        dataset,
        train=train.select(~held),
        test=train.select(held & joined),
        train_times=[
            moment for moment, out in zip(dataset.train_times, held, strict=True) if not out
        ],
    )


def _check_shares(share: float, newcomer_share: float) -> None:
    for name, value in (("share", share), ("newcomer_share", newcomer_share)):
        if not 0 < value < 1:
            raise ValueError(f"{name} must be in (0, 1), found {value}")


def _carve(
    members: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    pool: np.ndarray,
    share: float,
    newcomer_share: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, validation)`` masks over the interactions (see :func:`carve_validation`).

    Args:
        members: ``(N,)`` member (any integer id) of each interaction.
        items: ``(N,)`` item of each interaction.
        times: ``(N,)`` when each happened, as numbers.
        pool: The members newcomers are drawn from.
        share: Share of each member's interactions held out.
        newcomer_share: Share of ``pool`` made newcomers.
        rng: The seeded generator.
    """
    members = np.asarray(members, dtype=np.int64)
    n_new = min(len(pool) - 1, max(1, round(newcomer_share * len(pool)))) if len(pool) > 1 else 0
    newcomers = set(rng.permutation(np.asarray(pool, dtype=np.int64))[:n_new].tolist())
    held = np.array([member in newcomers for member in members.tolist()], dtype=bool)
    order = np.lexsort((np.arange(len(members)), times, members))
    bounds = np.flatnonzero(np.diff(members[order])) + 1
    for group in np.split(order, bounds) if len(order) else []:
        n = len(group)
        if int(members[group[0]]) not in newcomers and n >= 2:
            held[group[n - math.ceil(share * n) :]] = True
    kept_pairs = set(zip(members[~held].tolist(), np.asarray(items)[~held].tolist(), strict=True))
    repeated = np.array(
        [
            bool(h) and (m, i) in kept_pairs
            for h, m, i in zip(held, members.tolist(), np.asarray(items).tolist(), strict=True)
        ],
        dtype=bool,
    )
    return ~held, held & ~repeated


@dataclass(frozen=True)
class GroupTuning:
    """The search for one group of members.

    Attributes:
        group: ``with_history`` or ``without_history``.
        members: Validation members of the group scored.
        start: The weights in force before tuning.
        start_metrics: Their validation figures.
        best: The best weights found.
        best_metrics: Their validation figures.
        trials: Weight sets tried.
    """

    group: Group
    members: int
    start: RankingWeights
    start_metrics: dict[str, float | None]
    best: RankingWeights
    best_metrics: dict[str, float | None]
    trials: int


@dataclass(frozen=True)
class TuningResult:
    """What ``nurture evaluate --tune`` found.

    Attributes:
        dataset: The folder tuned on.
        k: The cut-off scored.
        seed: The seed of the validation split and the search.
        groups: The search of each group.
        counts: Interactions kept for training and held out for validation.
    """

    dataset: Path
    k: int
    seed: int
    groups: dict[str, GroupTuning]
    counts: dict[str, int]

    def weights(self) -> tuple[RankingWeights, RankingWeights]:
        """The best weights of members with a history, and of members without."""
        return self.groups["with_history"].best, self.groups["without_history"].best

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values."""
        return {
            "dataset": str(self.dataset),
            "k": self.k,
            "seed": self.seed,
            "counts": self.counts,
            "groups": {
                name: {
                    "members": group.members,
                    "trials": group.trials,
                    "start": group.start.model_dump(),
                    "start_metrics": group.start_metrics,
                    "best": group.best.model_dump(),
                    "best_metrics": group.best_metrics,
                }
                for name, group in self.groups.items()
            },
        }


def _group_metrics(
    signals: SandboxSignals,
    data: EvaluationData,
    rows: np.ndarray,
    ids: list[int],
    k: int,
    weights: RankingWeights,
) -> dict[str, float | None]:
    """The validation figures of ``weights`` on the members ``rows`` (sandbox ids ``ids``)."""
    lists = signals.rank(ids, weights, k)
    key_of = {member_id: data.member_keys[row] for member_id, row in zip(ids, rows, strict=True)}
    return score_lists(data, rows, {key_of[i]: ranked for i, ranked in lists.items()}, k)


def _group_objective(
    metrics: Callable[[RankingWeights], Mapping[str, float | None]],
    k: int,
    weights: RankingWeights,
) -> float:
    """What the search maximises: ``precision@k + nDCG@k`` on validation."""
    figures = metrics(weights)
    return (figures.get(f"precision@{k}") or 0.0) + (figures.get(f"ndcg@{k}") or 0.0)


def tune_folder(
    settings: Settings,
    folder: Path,
    *,
    k: int = 10,
    trials: int = 40,
    seed: int | None = None,
    start: tuple[RankingWeights, RankingWeights] | None = None,
) -> TuningResult:
    """Search ranking weights for both groups of members on a dataset folder's training data.

    ``test.csv`` is never read. See the module's docstring for the validation split and the
    search.

    Args:
        settings: The settings in force (model, segmentation...); the weights in force are
            the search's start.
        folder: The dataset folder.
        k: Cut-off of the lists scored.
        trials: Weight sets tried per group, the start included.
        seed: Seed of the validation split and the search; the settings' random seed when
            none.
        start: The weights to start from, ``(with history, without history)``; those in force
            (:func:`nurture.recommend.ranking_file.ranking_weight_sets`) when none.

    Returns:
        The result of both searches.

    Raises:
        EvaluationDataError: A training file is missing or invalid.
        ValueError: ``k`` or ``trials`` is below 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, found {k}")
    seed = settings.random_seed if seed is None else seed
    starts = start if start is not None else ranking_weight_sets(settings)
    with folder_validation(settings, folder, k=k, seed=seed) as split:
        groups = _search_groups(
            split.signals, split.data, split.member_ids, starts, k=k, trials=trials, seed=seed
        )
    return TuningResult(
        dataset=folder,
        k=k,
        seed=seed,
        groups=groups,
        counts=_counts(split.data, groups),
    )


@dataclass(frozen=True)
class ValidationSplit:
    """A validation split carved from a dataset's training data, ranked once.

    Attributes:
        name: What it was carved from (a folder, a workspace).
        data: The split: training = what is left, test = the validation interactions.
        signals: The ranking signals of its sandbox, for cheap re-ranking.
        member_ids: The sandbox member id of each member key of ``data``.
    """

    name: str
    data: EvaluationData
    signals: SandboxSignals
    member_ids: Mapping[str, int]


@contextlib.contextmanager
def folder_validation(
    settings: Settings,
    folder: Path,
    *,
    k: int = 10,
    seed: int | None = None,
    cold_start_protocol: bool = False,
) -> Iterator[ValidationSplit]:
    """Carve a dataset folder's validation split and run the nightly stages on it once.

    ``test.csv`` is never read (``load_dataset_folder(..., with_test=False)``); see
    :func:`carve_validation`. The sandbox lives as long as the context.

    Args:
        settings: The settings in force.
        folder: The dataset folder.
        k: Cut-off of the lists.
        seed: Seed of the split; the settings' random seed when none.
        cold_start_protocol: Carve newcomers only, as the Stack Exchange converter's
            cold-start protocol does (:func:`carve_cold_start_validation`).

    Yields:
        The split and its signals.

    Raises:
        EvaluationDataError: A training file is missing or invalid.
    """
    seed = settings.random_seed if seed is None else seed
    dataset = load_dataset_folder(
        folder, languages=load_workspace_config(settings.workspace).languages, with_test=False
    )
    validation = (
        carve_cold_start_validation(dataset, seed=seed)
        if cold_start_protocol
        else carve_validation(dataset, seed=seed)
    )
    data = validation.evaluation_data()
    with nurture_sandbox(settings, k) as sandbox:
        member_ids = stage_folder(validation, sandbox)
        rank_with_nurture(sandbox, validation.now)
        signals = SandboxSignals(sandbox, validation.now)
        yield ValidationSplit(str(folder), data, signals, member_ids)


def _counts(data: EvaluationData, groups: Mapping[str, GroupTuning]) -> dict[str, int]:
    return {
        "training_interactions": len(data.train),
        "validation_interactions": len(data.test),
        "validation_members_with_history": groups["with_history"].members,
        "validation_newcomers": groups["without_history"].members,
    }


def _search_groups(
    signals: SandboxSignals,
    data: EvaluationData,
    member_ids: Mapping[str, int],
    starts: tuple[RankingWeights, RankingWeights],
    *,
    k: int,
    trials: int,
    seed: int,
) -> dict[str, GroupTuning]:
    """Search each group's weights on its validation members (sandbox ids ``member_ids``)."""
    groups: dict[str, GroupTuning] = {}
    for group, mode, begin in (
        ("with_history", "warm", starts[0]),
        ("without_history", "cold-start", starts[1]),
    ):
        rows = data.members_to_evaluate(mode)  # type: ignore[arg-type]
        ids = [member_ids[data.member_keys[row]] for row in rows]
        metrics = functools.partial(_group_metrics, signals, data, rows, ids, k)
        found = search_weights(
            functools.partial(_group_objective, metrics, k),
            begin,
            SEARCH_SPACES[group],
            trials=trials if len(rows) else 1,
            seed=seed,
        )
        groups[group] = GroupTuning(
            group=group,  # type: ignore[arg-type]
            members=len(rows),
            start=begin,
            start_metrics=metrics(begin),
            best=found.best,
            best_metrics=metrics(found.best),
            trials=found.trials,
        )
    return groups


_GROUP_MODES: tuple[tuple[Group, Literal["warm", "cold-start"]], ...] = (
    ("with_history", "warm"),
    ("without_history", "cold-start"),
)


@dataclass(frozen=True)
class JointGroupTuning:
    """The joint search of one group of members over several validation splits.

    Attributes:
        group: ``with_history`` or ``without_history``.
        start: The weights it started from.
        start_score: Their objective (mean ratio to the best baseline, 1.0 = at par).
        best: The best weights found.
        best_score: Their objective.
        trials: Weight sets tried.
        figures: Per split name: the validation members scored, ``precision@k`` and
            ``ndcg@k`` of ``start`` and ``best`` and of the best baseline (each metric's best).
    """

    group: Group
    start: RankingWeights
    start_score: float
    best: RankingWeights
    best_score: float
    trials: int
    figures: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class JointTuning:
    """What a joint search over several datasets' validation splits found.

    Attributes:
        k: The cut-off scored.
        seed: The seed of the search.
        groups: The search of each group.
    """

    k: int
    seed: int
    groups: dict[str, JointGroupTuning]

    def weights(self) -> tuple[RankingWeights, RankingWeights]:
        """The best weights of members with a history, and of members without."""
        return self.groups["with_history"].best, self.groups["without_history"].best

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values."""
        return {
            "k": self.k,
            "seed": self.seed,
            "groups": {
                name: {
                    "trials": group.trials,
                    "start": group.start.model_dump(),
                    "start_score": group.start_score,
                    "best": group.best.model_dump(),
                    "best_score": group.best_score,
                    "figures": group.figures,
                }
                for name, group in self.groups.items()
            },
        }


def tune_jointly(
    splits: Sequence[ValidationSplit],
    starts: tuple[RankingWeights, RankingWeights],
    *,
    k: int = 10,
    trials: int = 200,
    seed: int = 42,
) -> JointTuning:
    """Search each group's weights on several validation splits at once, against the baselines.

    On every split and group the baselines (:func:`score_recommenders`) rank the same
    validation members; the objective of a weight set is the mean, over the splits and both
    metrics, of nurture's ``precision@k`` and ``nDCG@k`` divided by the best baseline's (a
    split or metric whose best baseline scores 0 is left out). Pooling the splits gives the
    search more validation members than any one dataset has; nothing here reads a test.

    Args:
        splits: Validation splits (:func:`folder_validation`, :func:`workspace_validation`).
        starts: The weights to start from, ``(with history, without history)``.
        k: Cut-off of the lists scored.
        trials: Weight sets tried per group, the start included.
        seed: Seed of the search.

    Returns:
        The best weights of each group with their validation figures.

    Raises:
        ValueError: ``k`` or ``trials`` is below 1, or ``splits`` is empty.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, found {k}")
    if not splits:
        raise ValueError("tune_jointly needs at least one validation split")
    metric_names = (f"precision@{k}", f"ndcg@{k}")
    names = [split.name for split in splits]  # a name that repeats gets its position
    groups: dict[str, JointGroupTuning] = {}
    for (group, mode), begin in zip(_GROUP_MODES, starts, strict=True):
        scorers: list[tuple[str, int, Callable[[RankingWeights], Mapping[str, float | None]]]] = []
        bests: dict[str, dict[str, float]] = {}
        for number, split in enumerate(splits, start=1):
            rows = split.data.members_to_evaluate(mode)
            if not len(rows):
                continue
            ids = [split.member_ids[split.data.member_keys[row]] for row in rows]
            baselines = score_recommenders(
                split.data, rows, np.full((len(rows), k), -1, dtype=np.int64), k, seed
            )
            name_of_split = (
                split.name if names.count(split.name) == 1 else f"{split.name} #{number}"
            )
            bests[name_of_split] = {
                name: max(
                    (values.get(name) or 0.0)
                    for recommender, values in baselines.items()
                    if recommender != "nurture"
                )
                for name in metric_names
            }
            scorers.append(
                (
                    name_of_split,
                    len(rows),
                    functools.partial(_group_metrics, split.signals, split.data, rows, ids, k),
                )
            )

        def objective(
            weights: RankingWeights,
            scorers: list[
                tuple[str, int, Callable[[RankingWeights], Mapping[str, float | None]]]
            ] = scorers,
            bests: dict[str, dict[str, float]] = bests,
        ) -> float:
            ratios = [
                (figures.get(name) or 0.0) / bests[split_name][name]
                for split_name, _, metrics in scorers
                for figures in (metrics(weights),)
                for name in metric_names
                if bests[split_name][name] > 0
            ]
            return float(np.mean(ratios)) if ratios else 0.0

        found = search_weights(
            objective, begin, SEARCH_SPACES[group], trials=trials if scorers else 1, seed=seed
        )
        figures: dict[str, dict[str, Any]] = {}
        for split_name, members, metrics in scorers:
            start_figures, best_figures = metrics(begin), metrics(found.best)
            figures[split_name] = {
                "members": members,
                **{f"start {name}": start_figures.get(name) for name in metric_names},
                **{f"best {name}": best_figures.get(name) for name in metric_names},
                **{f"baseline {name}": bests[split_name][name] for name in metric_names},
            }
        groups[group] = JointGroupTuning(
            group=group,
            start=begin,
            start_score=found.start_score,
            best=found.best,
            best_score=found.best_score,
            trials=found.trials,
            figures=figures,
        )
    return JointTuning(k=k, seed=seed, groups=groups)


def tune_workspace(
    runtime: Runtime,
    *,
    k: int = 10,
    trials: int = 40,
    seed: int | None = None,
    start: tuple[RankingWeights, RankingWeights] | None = None,
    cutoff: dt.datetime | None = None,
    test_share: float = 0.2,
) -> TuningResult:
    """Search ranking weights for both groups on the workspace's activity before ``cutoff``.

    The activity at or after the cut-off (what ``nurture evaluate`` tests on, with the same
    cut-off) is never read: the validation split is carved from the events before it, as
    :func:`carve_validation` does (newcomers drawn among every member with events), and the
    sandbox ranks at the cut-off.

    Args:
        runtime: The runtime of the workspace and its database.
        k: Cut-off of the lists scored.
        trials: Weight sets tried per group, the start included.
        seed: Seed of the validation split and the search; the settings' when none.
        start: The weights to start from; those in force when none.
        cutoff: The time before which activity trains; none leaves the last ``test_share``
            of the interactions out, as ``nurture evaluate`` does.
        test_share: Share left out when ``cutoff`` is none.

    Returns:
        The result of both searches.

    Raises:
        EvaluationDataError: There is no activity before the cut-off to learn from.
        ValueError: ``k`` or ``trials`` is below 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, found {k}")
    seed = runtime.settings.random_seed if seed is None else seed
    starts = start if start is not None else runtime.ranking_weight_sets
    with workspace_validation(
        runtime, k=k, seed=seed, start=starts, cutoff=cutoff, test_share=test_share
    ) as split:
        groups = _search_groups(
            split.signals, split.data, split.member_ids, starts, k=k, trials=trials, seed=seed
        )
    return TuningResult(
        dataset=runtime.settings.workspace,
        k=k,
        seed=seed,
        groups=groups,
        counts=_counts(split.data, groups),
    )


@contextlib.contextmanager
def workspace_validation(
    runtime: Runtime,
    *,
    k: int = 10,
    seed: int | None = None,
    start: tuple[RankingWeights, RankingWeights] | None = None,
    cutoff: dt.datetime | None = None,
    test_share: float = 0.2,
) -> Iterator[ValidationSplit]:
    """Carve a validation split from the workspace's activity before ``cutoff``, ranked once.

    The activity at or after the cut-off (what ``nurture evaluate`` tests on, with the same
    cut-off) is never read; see :func:`tune_workspace`.

    Args:
        runtime: The runtime of the workspace and its database.
        k: Cut-off of the lists.
        seed: Seed of the split; the settings' when none.
        start: The weights the sandbox's nightly run ranks with; those in force when none.
        cutoff: The time before which activity trains; none leaves the last ``test_share``
            of the interactions out, as ``nurture evaluate`` does.
        test_share: Share left out when ``cutoff`` is none.

    Yields:
        The split and its signals.

    Raises:
        EvaluationDataError: There is no activity before the cut-off to learn from.
    """
    settings = runtime.settings
    seed = settings.random_seed if seed is None else seed
    starts = start if start is not None else runtime.ranking_weight_sets
    if cutoff is not None and cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=dt.UTC)
    with nurture_sandbox(settings, k, workspace=settings.workspace, weights=starts) as sandbox:
        with runtime.session() as source, sandbox.session() as target:
            events = load_interactions(source)
            if cutoff is None and events:
                cutoff = temporal_cutoff([event.occurred_at for event in events], test_share)
            train = [event for event in events if cutoff is not None and event.occurred_at < cutoff]
            if not train or cutoff is None:
                raise EvaluationDataError(
                    [Problem("activity", "no interaction with content before the cut-off")]
                )
            item_of: dict[str, int] = {}
            keep, validation = _carve(
                np.array([event.member_id for event in train], dtype=np.int64),
                np.array(
                    [item_of.setdefault(event.content_key, len(item_of)) for event in train],
                    dtype=np.int64,
                ),
                np.array([event.occurred_at.timestamp() for event in train], dtype=np.float64),
                np.unique([event.member_id for event in train]),
                0.2,
                0.2,
                np.random.default_rng(seed),
            )
            left_out = {
                int(event.event_id or 0)
                for event, kept in zip(train, keep, strict=True)
                if not kept
            }
            tested = {
                int(event.event_id or 0)
                for event, valid in zip(train, validation, strict=True)
                if valid
            }
            names = cached_vector_names(
                settings.embedding_model,
                settings.embedding_backend,
                settings.library_embedding_backend,
            )
            stage_workspace(source, target, cutoff, names, leave_out=left_out)
        rank_with_nurture(sandbox, cutoff)
        choices = [
            question.key
            for question in runtime.workspace.questionnaire.questions
            if question.kind == "single_choice"
        ]
        scored = [
            event for event in train if event.event_id not in left_out or event.event_id in tested
        ]
        with sandbox.session() as target:
            data = split_in_time(target, scored, cutoff, choice_questions=choices, held_out=tested)
        signals = SandboxSignals(sandbox, cutoff)
        member_ids = {key: int(key) for key in data.member_keys}
        yield ValidationSplit(str(settings.workspace), data, signals, member_ids)
