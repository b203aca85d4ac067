"""Readable segment labels and cards: distinctive answers and top terms of each cluster."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from nurture.profiling.layout import CHOICE_KINDS, QuestionnaireLike, english_label

__all__ = [
    "FRENCH_STOP_WORDS",
    "SegmentDescription",
    "distinctive_answers",
    "label_segments",
    "top_terms",
]

FRENCH_STOP_WORDS = frozenset(
    """
    au aux avec ce ces cet cette dans de des du elle elles en et eux il ils je la le les leur
    leurs lui ma mais me meme même mes moi mon ne nos notre nous on ou où par pas pour qu que
    qui sa se ses son sur ta te tes toi ton tu un une vos votre vous est sont été être avoir ai
    as avons avez ont était étaient sera seront serait suis es sommes êtes fait faire plus moins
    très tres bien aussi comme donc alors ainsi car si tout tous toute toutes autre autres cela
    ça ceci celle celui ceux chaque quand comment pourquoi dont encore peu beaucoup sans sous
    entre vers chez depuis pendant avant après apres déjà deja ici là non oui mieux veux
    voudrais aimerais souhaite souhaitons attends attendons attend
    """.split()  # noqa: SIM905 - a word list reads better as text
)
"""French stop words for the free-text terms (single words, no apostrophes)."""

_STOP_WORDS = sorted(ENGLISH_STOP_WORDS | FRENCH_STOP_WORDS)
_TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"

MIN_SHARE = 0.3
"""An answer is distinctive only if at least this share of the segment gave it..."""

MIN_LIFT = 1.2
"""... and the segment gives it at least this many times more often than everyone."""


@dataclass(frozen=True)
class SegmentDescription:
    """A segment's readable label and its card (JSON-ready)."""

    label: str
    card: dict[str, Any] = field(default_factory=dict)


def _chosen(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str)]
    return []


def distinctive_answers(
    questionnaire: QuestionnaireLike,
    answers: Sequence[Mapping[str, Any]],
    in_segment: np.ndarray,
    *,
    limit: int = 5,
) -> list[dict[str, Any]]:
    """The answers a segment gives much more often than everyone, best first.

    The score of an option is ``share_in_segment * log(lift)``, where lift is the option's share
    in the segment over its share overall; options below :data:`MIN_SHARE` or :data:`MIN_LIFT`
    are left out.

    Args:
        questionnaire: The questionnaire (choice questions with ``profile`` true count).
        answers: Each member's ``{question key: answer}``, in the order of ``in_segment``.
        in_segment: Boolean mask of the segment's members.
        limit: Most answers returned.

    Returns:
        Dicts with ``question``, ``option``, ``label`` (English), ``share``, ``overall_share``
        and ``lift``.
    """
    n_all = len(answers)
    n_in = int(in_segment.sum())
    if not n_all or not n_in:
        return []
    found: list[tuple[float, dict[str, Any]]] = []
    for question in questionnaire.questions:
        if not getattr(question, "profile", True) or question.kind not in CHOICE_KINDS:
            continue
        overall: Counter[str] = Counter()
        inside: Counter[str] = Counter()
        for member_answers, member_in in zip(answers, in_segment, strict=True):
            chosen = set(_chosen(member_answers.get(question.key)))
            overall.update(chosen)
            if member_in:
                inside.update(chosen)
        for option in question.options:
            share = inside[option.key] / n_in
            overall_share = overall[option.key] / n_all
            if share < MIN_SHARE or overall_share == 0:
                continue
            lift = share / overall_share
            if lift < MIN_LIFT:
                continue
            entry = {
                "question": question.key,
                "option": option.key,
                "label": english_label(option.labels, option.key),
                "share": round(share, 3),
                "overall_share": round(overall_share, 3),
                "lift": round(lift, 2),
            }
            found.append((share * math.log(lift), entry))
    found.sort(key=lambda item: (-item[0], item[1]["question"], item[1]["option"]))
    return [entry for _, entry in found[:limit]]


def top_terms(documents: Sequence[str], *, limit: int = 8) -> list[list[str]]:
    """The most distinctive terms of each document against the others (TF-IDF).

    Each document is one segment's free texts joined; English and French stop words are left
    out.

    Args:
        documents: One text per segment.
        limit: Most terms per segment.

    Returns:
        One list of terms per document, best first (empty for an empty document).
    """
    if not any(doc.strip() for doc in documents):
        return [[] for _ in documents]
    vectorizer = TfidfVectorizer(
        stop_words=_STOP_WORDS, token_pattern=_TOKEN_PATTERN, sublinear_tf=True
    )
    try:
        matrix = vectorizer.fit_transform(documents).toarray()
    except ValueError:  # nothing left once stop words are removed
        return [[] for _ in documents]
    vocabulary = vectorizer.get_feature_names_out()
    result: list[list[str]] = []
    for row in matrix:
        order = sorted(np.flatnonzero(row > 0), key=lambda j: (-row[j], vocabulary[j]))
        result.append([str(vocabulary[j]) for j in order[:limit]])
    return result


def label_segments(
    questionnaire: QuestionnaireLike,
    member_ids: Sequence[int],
    segment_of: np.ndarray,
    answers: Mapping[int, Mapping[str, Any]],
    texts: Mapping[int, str],
    *,
    lifecycle: Mapping[int, str] | None = None,
    distances: np.ndarray | None = None,
    n_segments: int | None = None,
    label_answers: int = 2,
    label_terms: int = 3,
) -> list[SegmentDescription]:
    """A readable label and a card for each segment.

    The label joins the segment's most distinctive answers (from different questions, in
    English) and its top free-text terms, e.g. ``"Founder · Grow members · 'b2b, roi,
    customers'"``; a segment with neither gets its main lifecycle stage
    (``"Mostly dormant members"``).

    Args:
        questionnaire: The questionnaire, for option labels.
        member_ids: Members, in the order of ``segment_of``.
        segment_of: Segment index of each member.
        answers: ``{member id: {question key: answer}}``.
        texts: ``{member id: free text}`` (all free-text answers of the member joined).
        lifecycle: ``{member id: lifecycle stage}``, for the card's lifecycle mix.
        distances: Distance of each member to its segment's centroid; the closest members are
            the card's examples (the first ids otherwise).
        n_segments: Number of segments (default: ``max(segment_of) + 1``).
        label_answers: Distinctive answers in the label.
        label_terms: Terms in the label.

    Returns:
        One description per segment index.
    """
    segment_of = np.asarray(segment_of)
    k = (
        n_segments
        if n_segments is not None
        else (int(segment_of.max()) + 1 if len(segment_of) else 0)
    )
    ids = np.asarray(member_ids)
    member_answers = [answers.get(int(member_id), {}) for member_id in ids]
    documents = [
        " ".join(texts.get(int(member_id), "") for member_id in ids[segment_of == index])
        for index in range(k)
    ]
    terms = top_terms(documents)
    descriptions: list[SegmentDescription] = []
    for index in range(k):
        mask = segment_of == index
        size = int(mask.sum())
        distinctive = distinctive_answers(questionnaire, member_answers, mask)
        parts: list[str] = []
        used_questions: set[str] = set()
        for entry in distinctive:
            if len(parts) >= label_answers:
                break
            if entry["question"] not in used_questions:
                used_questions.add(entry["question"])
                parts.append(entry["label"])
        if terms[index][:label_terms]:
            parts.append("'" + ", ".join(terms[index][:label_terms]) + "'")
        members_here = ids[mask]
        stages: Counter[str] = (
            Counter(lifecycle.get(int(m), "unknown") for m in members_here)
            if lifecycle
            else Counter()
        )
        if not parts:  # nothing distinctive: say who they are by lifecycle, at least
            top = stages.most_common(1)
            parts.append(
                f"Mostly {top[0][0].replace('_', ' ')} members" if top else "Mixed members"
            )
        label = " · ".join(parts)
        if distances is not None and size:
            order = np.argsort(np.asarray(distances)[mask], kind="stable")
            examples = [int(member_id) for member_id in members_here[order][:3]]
        else:
            examples = [int(member_id) for member_id in members_here[:3]]
        card = {
            "size": size,
            "share": round(size / len(ids), 3) if len(ids) else 0.0,
            "distinctive": distinctive,
            "lifecycle": dict(sorted(stages.items())),
            "top_terms": terms[index],
            "examples": examples,
        }
        descriptions.append(SegmentDescription(label=label[:300], card=card))
    return descriptions
