"""Readable reasons: why an item was recommended, in the member's language.

The reason names the closest piece of evidence the member gave us (their free-text answer, a
goal they chose, content they consumed), each piece for one item only (the best ranked it is
close to), so that an email's picks each say why *that* pick; when none is left close enough,
the content they consumed that other members consumed together with the item; else, when the
learned collaborative model put it forward, members whose activity is like theirs (a second such
item of the same list names the content of theirs that most supports it in the model); else the
item's popularity with members like them (their segment) or in the whole community.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Evidence",
    "EvidenceKind",
    "closest_evidence",
    "co_engagement_reason",
    "collaborative_reason",
    "distinct_evidence",
    "goal_label",
    "popular_reason",
    "reason_text",
    "shorten_quote",
]

QUOTE_MAX_CHARS = 80
"""A quoted answer longer than this is cut at a word boundary."""


class EvidenceKind(enum.StrEnum):
    """Where a piece of evidence about a member comes from."""

    ANSWER = "answer"
    GOAL = "goal"
    READ = "read"
    ATTENDED = "attended"


@dataclass(frozen=True)
class Evidence:
    """One thing a member told us or did, and the text shown in a reason.

    Attributes:
        kind: Where the evidence comes from.
        text: The answer, the goal label or the item title, as shown to the member.
    """

    kind: EvidenceKind
    text: str


_GOAL_LABELS: dict[str, dict[str, str]] = {
    "grow_members": {"en": "grow members", "fr": "faire grandir la communauté"},
    "improve_engagement": {"en": "improve engagement", "fr": "améliorer l'engagement"},
    "onboard_newcomers": {"en": "onboard newcomers", "fr": "accueillir les nouveaux membres"},
    "measure_roi": {"en": "measure ROI", "fr": "mesurer le retour sur investissement"},
    "run_events": {"en": "run events", "fr": "organiser des événements"},
    "create_content": {"en": "create content", "fr": "créer du contenu"},
    "reduce_churn": {"en": "reduce churn", "fr": "réduire l'attrition"},
    "build_ambassadors": {"en": "build ambassadors", "fr": "former des ambassadeurs"},
}

_TEMPLATES: dict[str, dict[EvidenceKind | str, str]] = {
    "en": {
        EvidenceKind.ANSWER: "You said: “{text}”",
        EvidenceKind.GOAL: "You want to: {text}",
        EvidenceKind.READ: "Because you read “{text}”",
        EvidenceKind.ATTENDED: "Because you attended “{text}”",
        "co_read": "Members who read “{text}” also liked this",
        "co_attended": "Members who attended “{text}” also liked this",
        "collaborative": "Liked by members whose activity is like yours",
        "collaborative_again": "Also liked by members whose activity is like yours",
        "collaborative_read": "Liked by members who, like you, read “{text}”",
        "collaborative_attended": "Liked by members who, like you, attended “{text}”",
        "popular_segment": "Popular with members like you",
        "popular": "Popular in the community",
    },
    "fr": {
        EvidenceKind.ANSWER: "Vous avez dit : « {text} »",
        EvidenceKind.GOAL: "Vous souhaitez : {text}",
        EvidenceKind.READ: "Parce que vous avez lu « {text} »",
        EvidenceKind.ATTENDED: "Parce que vous avez participé à « {text} »",
        "co_read": "Les membres qui ont lu « {text} » ont aussi apprécié ce contenu",
        "co_attended": "Les membres qui ont participé à « {text} » ont aussi apprécié ce contenu",
        "collaborative": "Apprécié des membres dont l'activité ressemble à la vôtre",
        "collaborative_again": (
            "Également apprécié des membres dont l'activité ressemble à la vôtre"
        ),
        "collaborative_read": "Apprécié des membres qui, comme vous, ont lu « {text} »",
        "collaborative_attended": (
            "Apprécié des membres qui, comme vous, ont participé à « {text} »"
        ),
        "popular_segment": "Apprécié des membres qui vous ressemblent",
        "popular": "Populaire dans la communauté",
    },
}

_SPACES = re.compile(r"\s+")


def _language(language: str) -> str:
    code = (language or "en")[:2].lower()
    return code if code in _TEMPLATES else "en"


def goal_label(goal_key: str, language: str = "en") -> str:
    """The readable label of a questionnaire goal option (``grow_members``) in ``language``.

    Args:
        goal_key: The option key.
        language: ``en`` or ``fr``; others fall back to English.

    Returns:
        The label; an unknown key reads as its words (``_`` replaced by spaces).
    """
    labels = _GOAL_LABELS.get(goal_key)
    if labels is None:
        return goal_key.replace("_", " ").strip()
    return labels[_language(language)]


def shorten_quote(text: str, limit: int = QUOTE_MAX_CHARS) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis when longer than ``limit``.

    Args:
        text: The text to quote.
        limit: Longest result, in characters, ellipsis included.

    Returns:
        The shortened text.
    """
    text = _SPACES.sub(" ", text).strip().strip('"“”«» ')
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 1)
    head = text[: cut if cut > 0 else limit - 1].rstrip(" ,;:.-")
    return head + "…"


def reason_text(evidence: Evidence, language: str) -> str:
    """The reason sentence for one piece of evidence, in ``language`` (``en`` or ``fr``).

    Args:
        evidence: The evidence the reason rests on.
        language: The member's language.

    Returns:
        The reason, for example ``You said: “I want to grow our B2B customer community”``.
    """
    text = shorten_quote(evidence.text) if evidence.kind == EvidenceKind.ANSWER else evidence.text
    return _TEMPLATES[_language(language)][evidence.kind].format(text=text)


def co_engagement_reason(evidence: Evidence, language: str) -> str:
    """The reason given for an item that members who consumed ``evidence`` also consumed.

    Args:
        evidence: What the member read (``READ``) or attended (``ATTENDED``).
        language: The member's language.

    Returns:
        For example ``Members who read “Measure community ROI” also liked this``.
    """
    key = "co_attended" if evidence.kind == EvidenceKind.ATTENDED else "co_read"
    return _TEMPLATES[_language(language)][key].format(text=evidence.text)


def collaborative_reason(
    language: str, evidence: Evidence | None = None, *, again: bool = False
) -> str:
    """The reason given for an item the learned collaborative model put forward.

    Args:
        language: The member's language.
        evidence: What the member read (``READ``) or attended (``ATTENDED``) that most supports
            the item in the model, when the reason names it.
        again: Without evidence, whether another item of the same list already has the generic
            reason (this one then reads differently).

    Returns:
        ``Liked by members whose activity is like yours``; with evidence, for example ``Liked
        by members who, like you, read “Measure community ROI”``; ``again``, ``Also liked by
        members whose activity is like yours``.
    """
    templates = _TEMPLATES[_language(language)]
    if evidence is not None:
        key = (
            "collaborative_attended"
            if evidence.kind == EvidenceKind.ATTENDED
            else ("collaborative_read")
        )
        return templates[key].format(text=evidence.text)
    return templates["collaborative_again" if again else "collaborative"]


def popular_reason(in_segment: bool, language: str) -> str:
    """The reason given when nothing the member told us or did explains the item.

    Args:
        in_segment: Whether the member belongs to a segment (their segment's popularity ranked
            the item), rather than to none (the community's did).
        language: The member's language.

    Returns:
        ``Popular with members like you``, or ``Popular in the community``.
    """
    return _TEMPLATES[_language(language)]["popular_segment" if in_segment else "popular"]


def distinct_evidence(
    evidence_vectors: np.ndarray,
    evidence_mask: np.ndarray,
    recommended_vectors: np.ndarray,
    min_similarity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """For each recommended item, the closest evidence no better-ranked item already took.

    Items are served in rank order: each takes the closest piece of the member's evidence
    still free whose similarity reaches ``min_similarity``, so one answer or goal explains one
    item, not every item of an email.

    Args:
        evidence_vectors: ``(m, e, d)`` unit vectors of each member's evidence, padded.
        evidence_mask: ``(m, e)`` bool, true where a slot holds real evidence.
        recommended_vectors: ``(m, k, d)`` unit vectors of each member's recommended items,
            best first.
        min_similarity: The lowest cosine an item and its evidence may have.

    Returns:
        ``(best, similarity)``, both ``(m, k)``: the evidence slot each item took and its
        cosine; ``-1`` and ``-inf`` where none was left close enough.
    """
    m, k = recommended_vectors.shape[:2]
    best = np.full((m, k), -1, dtype=np.int64)
    found = np.full((m, k), -np.inf)
    if evidence_vectors.shape[1] == 0:
        return best, found
    similarity = np.einsum("med,mkd->mek", evidence_vectors, recommended_vectors)
    similarity = np.where(evidence_mask[:, :, None], similarity, -np.inf)
    rows = np.arange(m)
    free = np.ones(similarity.shape[:2], dtype=bool)
    for position in range(k):  # every member at once, one rank after the other
        column = np.where(free, similarity[:, :, position], -np.inf)
        slot = np.argmax(column, axis=1)
        value = column[rows, slot]
        taken = value >= min_similarity
        best[taken, position] = slot[taken]
        found[taken, position] = value[taken]
        free[rows[taken], slot[taken]] = False
    return best, found


def closest_evidence(
    evidence_vectors: np.ndarray,
    evidence_mask: np.ndarray,
    recommended_vectors: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For each recommended item of each member, the member's closest piece of evidence.

    Args:
        evidence_vectors: ``(m, e, d)`` unit vectors of each member's evidence, padded.
        evidence_mask: ``(m, e)`` bool, true where a slot holds real evidence.
        recommended_vectors: ``(m, k, d)`` unit vectors of each member's recommended items.

    Returns:
        ``(best, similarity)``, both ``(m, k)``: the index of the closest evidence slot and its
        cosine (``-inf`` when the member has no evidence).
    """
    similarity = np.einsum("med,mkd->mek", evidence_vectors, recommended_vectors)
    similarity = np.where(evidence_mask[:, :, None], similarity, -np.inf)
    if similarity.shape[1] == 0:
        m, k = recommended_vectors.shape[:2]
        return np.zeros((m, k), dtype=np.int64), np.full((m, k), -np.inf)
    best = np.argmax(similarity, axis=1)
    return best, np.take_along_axis(similarity, best[:, None, :], axis=1)[:, 0, :]
