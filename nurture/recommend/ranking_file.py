"""The ranking weights file (``ranking.yaml``): one set of weights per group of members.

Members with a history (who consumed something) and members without (newcomers, known only by
their answers, segment and the community's activity) are ranked with separate weights: what
ranks a newcomer well (popularity, their answers) is not what ranks a regular well (their
history, co-engagement, the learned model). ``nurture evaluate --tune`` learns both sets on a
validation split of the training data and writes the file::

    with_history:
      history: 0.4
      mmr_lambda: 0.9
    without_history:
      cold_start_popularity: 2.0
      community_popularity: 1.0

Each group takes any field of :class:`~nurture.recommend.RankingWeights`; a field left out keeps
the built-in default of its group (:data:`DEFAULT_WEIGHTS`). Settings win over the file:
``NURTURE_RANKING_WEIGHTS``, ``NURTURE_MMR_LAMBDA`` and ``NURTURE_INTEREST_HALF_LIFE_DAYS``
apply to both groups on top of it (:func:`resolve_ranking_weights`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from nurture.errors import Problem, RankingFileValidationError
from nurture.marketer_files.model_files import ModelFile, read_yaml_document, validate_document
from nurture.recommend.ranking import RankingWeights
from nurture.settings import Settings

__all__ = [
    "DEFAULT_WEIGHTS",
    "GROUPS",
    "RankingFile",
    "load_ranking_file",
    "ranking_weight_sets",
    "read_ranking_file",
    "resolve_ranking_weights",
    "weight_changes",
    "write_ranking_file",
]

GROUPS = ("with_history", "without_history")
"""The groups of members, as the file names them."""

DEFAULT_WEIGHTS: dict[str, dict[str, Any]] = {
    # RankingWeights' own defaults for both groups. Three candidates chosen on validation splits
    # of the training data were each checked once against these on the test splits and lost:
    # a pooled search (benchmarks/choose_defaults.py, 8 of 12 figures lost), and twice newcomers
    # ranked by the community's popularity (with a ten-year half-life, then undecayed:
    # decay_popularity off) and their answers, by score alone, chosen on newcomers carved like
    # the Stack Exchange converter's (benchmarks/newcomer_defaults.py; History Meta's cold start,
    # the cell they were meant for, lost both times). docs/evaluation.md, "Measured", has the
    # figures.
    "with_history": {},
    "without_history": {},
}
"""The built-in weights of each group, as changes to :class:`RankingWeights`' defaults (see
``docs/evaluation.md``, "Measured")."""


class RankingFile(BaseModel):
    """The ranking weights of members with a history and of members without."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    with_history: RankingWeights = Field(
        default_factory=lambda: RankingWeights(**DEFAULT_WEIGHTS["with_history"]),
        description="Weights of members who consumed something (viewed, clicked, attended).",
    )
    without_history: RankingWeights = Field(
        default_factory=lambda: RankingWeights(**DEFAULT_WEIGHTS["without_history"]),
        description="Weights of members who consumed nothing yet (newcomers).",
    )


def read_ranking_file(path: Path | str) -> ModelFile[RankingFile]:
    """Read a ranking weights file, collecting problems; an absent file gives the defaults.

    Args:
        path: The YAML file (``ranking.yaml`` in a workspace).

    Returns:
        The weights (``None`` on any problem) and every problem, each with its line and field.
    """
    path = Path(path)
    if not path.exists():
        return ModelFile(RankingFile())
    document, problems = read_yaml_document(path, what="the ranking weights")
    if document is None:
        return ModelFile(None, None, problems)
    data = {} if document.data is None else document.data
    expected = "a mapping with 'with_history' and 'without_history'"
    if not isinstance(data, dict):
        root = document.positions.get(())
        found = type(data).__name__
        problems.append(
            Problem(
                path,
                f"expected {expected}, found {found}",
                line=root.line if root else 1,
                column=root.column if root else 1,
            )
        )
        return ModelFile(None, document, problems)
    # A field left out keeps its group's built-in default, not RankingWeights' own.
    merged = {
        key: {**DEFAULT_WEIGHTS[key], **value}
        if key in DEFAULT_WEIGHTS and isinstance(value, dict)
        else value
        for key, value in data.items()
    }
    value, invalid = validate_document(document, RankingFile, path, data=merged)
    problems += invalid
    return ModelFile(value if not problems else None, document, problems)


def load_ranking_file(path: Path | str) -> RankingFile:
    """Read a ranking weights file; an absent file gives the built-in defaults.

    Args:
        path: The YAML file (``ranking.yaml`` in a workspace).

    Returns:
        The weights of both groups.

    Raises:
        RankingFileValidationError: The file is not valid YAML or names an unknown field or a
            value out of range; every problem is listed with its line and field.
    """
    loaded = read_ranking_file(path)
    if loaded.value is None:
        raise RankingFileValidationError(loaded.problems)
    return loaded.value


def resolve_ranking_weights(
    file: RankingFile, overrides: Mapping[str, Any]
) -> tuple[RankingWeights, RankingWeights]:
    """The weights in force for each group: the file's, with ``overrides`` on top of both.

    Args:
        file: The ranking weights file (or its defaults).
        overrides: Fields set by the settings (``NURTURE_RANKING_WEIGHTS``...), for both groups.

    Returns:
        ``(with_history, without_history)``.
    """
    return (
        file.with_history.model_copy(update=dict(overrides)),
        file.without_history.model_copy(update=dict(overrides)),
    )


def ranking_weight_sets(
    settings: Settings, path: Path | str | None = None
) -> tuple[RankingWeights, RankingWeights]:
    """``(with history, without history)``: the weights in force for each group of members.

    The built-in defaults, then the ranking weights file (when there is one), then the
    settings (``NURTURE_RANKING_WEIGHTS``, ``NURTURE_MMR_LAMBDA``,
    ``NURTURE_INTEREST_HALF_LIFE_DAYS``) on top of both groups.

    Args:
        settings: The settings in force.
        path: The ranking weights file; the workspace's ``ranking.yaml`` when none.

    Returns:
        The weights of members with a history, and of members without.

    Raises:
        RankingFileValidationError: The file is invalid.
    """
    tuning: dict[str, float | None] = {
        "interest_half_life_days": settings.interest_half_life_days,
        "mmr_lambda": settings.mmr_lambda,
    }
    overrides: dict[str, Any] = {
        str(name): value for name, value in settings.ranking_weights.items()
    }
    overrides.update({name: value for name, value in tuning.items() if value is not None})
    file = load_ranking_file(settings.ranking_path if path is None else path)
    return resolve_ranking_weights(file, overrides)


def weight_changes(weights: RankingWeights) -> dict[str, Any]:
    """The fields of ``weights`` that differ from :class:`RankingWeights`' defaults.

    Args:
        weights: Ranking weights.

    Returns:
        ``{field: value}`` for each field changed.
    """
    defaults = RankingWeights().model_dump()
    return {name: value for name, value in weights.model_dump().items() if defaults[name] != value}


def write_ranking_file(
    path: Path | str,
    with_history: RankingWeights,
    without_history: RankingWeights,
    *,
    comment: str = "",
) -> Path:
    """Write the weights of both groups as a ranking weights file.

    Every field is written, so that the file reads the same whatever the built-in defaults of
    the groups (:data:`DEFAULT_WEIGHTS`) become.

    Args:
        path: Where to write (the folder is created).
        with_history: Weights of members with a history.
        without_history: Weights of members without.
        comment: Lines written first, as YAML comments (what the weights were tuned on).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(
        {
            "with_history": with_history.model_dump(),
            "without_history": without_history.model_dump(),
        },
        sort_keys=False,
        default_flow_style=False,
    )
    header = "".join(f"# {line}".rstrip() + "\n" for line in comment.splitlines())
    path.write_text(header + body, encoding="utf-8")
    return path
