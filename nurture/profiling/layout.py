"""The feature layout: which column of a member's raw feature vector means what.

The layout is derived from the questionnaire and the embedding dimension only, so a member's
features never depend on other members and a chunk of members can be profiled on its own. Its
hash (``MemberProfile.feature_names_hash``) tells later stages whether two feature vectors are
comparable.

Columns, in order, by block:

``choices``
    one column per option of each single- or multiple-choice profile question (``role=founder``,
    1.0 when chosen), then one column per scale question (``experience``, normalised to 0..1).
``text``
    ``dim`` columns per free-text profile question: the answer's sentence embedding (zeros when
    empty).
``activity``
    recency: log-scaled days since the last activity; frequency: ``log1p`` counts of each event
    type over 7 / 30 / 90 days; mix: each event type's share of the member's events over the
    last 90 days; email engagement: clicks per open.

A question a member did not answer leaves its columns at zero (a scale question: the middle of
the scale).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "ACTIVITY_WINDOWS",
    "BLOCKS",
    "CHOICE_KINDS",
    "EVENT_TYPES",
    "MIX_WINDOW",
    "FeatureLayout",
    "OptionLike",
    "QuestionLike",
    "QuestionnaireLike",
    "english_label",
]

EVENT_TYPES = ("post", "comment", "event_attended", "content_view", "email_open", "email_click")
"""Activity event types that get count features (other types only count for recency)."""

ACTIVITY_WINDOWS = (7, 30, 90)
"""Look-back windows, in days, of the activity counts."""

MIX_WINDOW = 90
"""Look-back window, in days, of the activity mix (each event type's share)."""

BLOCKS = ("choices", "text", "activity")
"""Names of the feature blocks, in column order."""

CHOICE_KINDS = ("single_choice", "multiple_choice")


class OptionLike(Protocol):
    """What profiling needs of a question option."""

    key: str
    labels: Any  # ``labels.get("en")`` gives the English label (a dict or a LocalizedText)


class QuestionLike(Protocol):
    """What profiling needs of a questionnaire question."""

    key: str
    kind: str
    profile: bool
    options: Sequence[Any]
    min: int | None
    max: int | None


class QuestionnaireLike(Protocol):
    """What profiling needs of the questionnaire: its ordered questions."""

    @property
    def questions(self) -> Sequence[Any]:
        """The questions, in the questionnaire's order."""


def english_label(labels: Any, fallback: str) -> str:
    """The English text of ``labels`` (a ``{lang: text}`` dict or a localized-text model).

    Args:
        labels: The labels of an option or question; may be ``None``.
        fallback: A key to make readable when there is no English label.

    Returns:
        The English label, or ``fallback`` with underscores as spaces.
    """
    text = None
    if labels is not None:
        getter = getattr(labels, "get", None)
        if getter is not None:
            try:
                text = getter("en")
            except (KeyError, AttributeError):
                text = None
        else:
            text = getattr(labels, "en", None)
    if isinstance(text, str) and text.strip():
        return text.strip()
    return fallback.replace("_", " ")


@dataclass(frozen=True)
class FeatureLayout:
    """Names and blocks of the raw feature columns of a member profile.

    Attributes:
        names: One name per column.
        blocks: Block name (``choices``, ``text``, ``activity``) to its column range.
        choice_columns: Question key to ``{option key: column}`` for choice questions.
        scale_columns: Question key to ``(column, min, max)`` for scale questions.
        text_columns: Question key to the first column of its embedding, for free-text questions.
        text_dim: Dimension of each free-text embedding.
    """

    names: tuple[str, ...]
    blocks: Mapping[str, slice] = field(compare=False)
    choice_columns: Mapping[str, Mapping[str, int]] = field(compare=False)
    scale_columns: Mapping[str, tuple[int, float, float]] = field(compare=False)
    text_columns: Mapping[str, int] = field(compare=False)
    text_dim: int

    @classmethod
    def from_questionnaire(cls, questionnaire: QuestionnaireLike, text_dim: int) -> FeatureLayout:
        """The layout for ``questionnaire``'s profile questions and embeddings of ``text_dim``.

        Args:
            questionnaire: The questionnaire (only questions with ``profile`` true count).
            text_dim: The embedder's dimension.

        Returns:
            The layout.
        """
        names: list[str] = []
        choice_columns: dict[str, dict[str, int]] = {}
        scale_columns: dict[str, tuple[int, float, float]] = {}
        text_columns: dict[str, int] = {}
        questions = [q for q in questionnaire.questions if getattr(q, "profile", True)]
        for question in questions:
            if question.kind in CHOICE_KINDS:
                columns = choice_columns.setdefault(question.key, {})
                for option in question.options:
                    columns[option.key] = len(names)
                    names.append(f"{question.key}={option.key}")
        for question in questions:
            if question.kind == "scale":
                low = float(question.min if question.min is not None else 0)
                high = float(question.max if question.max is not None else low + 1)
                scale_columns[question.key] = (len(names), low, high)
                names.append(question.key)
        choices_end = len(names)
        for question in questions:
            if question.kind == "free_text":
                text_columns[question.key] = len(names)
                names.extend(f"{question.key}:text:{i}" for i in range(text_dim))
        text_end = len(names)
        names.append("activity:recency_log_days")
        for event_type in EVENT_TYPES:
            names.extend(f"activity:{event_type}:{days}d" for days in ACTIVITY_WINDOWS)
        names.extend(f"activity:mix:{event_type}" for event_type in EVENT_TYPES)
        names.append("activity:email_click_per_open")
        blocks = {
            "choices": slice(0, choices_end),
            "text": slice(choices_end, text_end),
            "activity": slice(text_end, len(names)),
        }
        return cls(
            names=tuple(names),
            blocks=blocks,
            choice_columns=choice_columns,
            scale_columns=scale_columns,
            text_columns=text_columns,
            text_dim=text_dim,
        )

    @classmethod
    def for_feature_count(cls, questionnaire: QuestionnaireLike, n_features: int) -> FeatureLayout:
        """The layout whose width is ``n_features``, inferring the embedding dimension.

        Args:
            questionnaire: The questionnaire the profiles were built with.
            n_features: The length of the stored feature vectors.

        Returns:
            The layout.

        Raises:
            ValueError: No embedding dimension gives ``n_features`` columns.
        """
        base = cls.from_questionnaire(questionnaire, 0)
        n_text = sum(
            1
            for q in questionnaire.questions
            if getattr(q, "profile", True) and q.kind == "free_text"
        )
        extra = n_features - len(base.names)
        if n_text == 0:
            if extra != 0:
                raise ValueError(
                    f"profiles have {n_features} features; this questionnaire gives "
                    f"{len(base.names)}: re-run profiling"
                )
            return base
        if extra < 0 or extra % n_text:
            raise ValueError(
                f"profiles have {n_features} features, which does not fit this questionnaire "
                f"({len(base.names)} columns + {n_text} text embeddings): re-run profiling"
            )
        return cls.from_questionnaire(questionnaire, extra // n_text)

    @property
    def n_features(self) -> int:
        """Number of columns."""
        return len(self.names)

    @property
    def hash(self) -> str:
        """SHA-256 of the column names: equal hashes mean comparable feature vectors."""
        payload = json.dumps(list(self.names), separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(payload).hexdigest()

    def block_columns(self) -> dict[str, list[int]]:
        """Block name to its column indices (empty blocks included)."""
        return {name: list(range(s.start, s.stop)) for name, s in self.blocks.items()}
