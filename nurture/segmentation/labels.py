"""Readable segment labels and cards: distinctive answers and top terms of each cluster."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from nurture.profiling.layout import CHOICE_KINDS, QuestionnaireLike, english_label

__all__ = [
    "FRENCH_STOP_WORDS",
    "GENERIC_WORDS",
    "SegmentDescription",
    "distinctive_answers",
    "distinctive_terms",
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

GENERIC_WORDS = frozenset(
    """
    make want like learn turn run use know need better good great way ways really lot lots
    hope expect ideally thanks thank glad happy tips welcome real feel best sure things thing
    people actually able getting going look looking try trying help helping new
    community communities member members
    faire avoir aider trouver vraie vrai vraiment merci ravi plaisir conseils bienvenus grâce
    envie marchent marche aussi tirer parti nouveau nouveaux nouvelle nouvelles
    communauté communautés membre membres
    """.split()  # noqa: SIM905 - a word list reads better as text
)
"""Common verbs and fillers (English, French), and words every community text uses, that say
nothing of a segment's topics."""

_STOP_WORDS = sorted(ENGLISH_STOP_WORDS | FRENCH_STOP_WORDS | GENERIC_WORDS)
_STOP_SET = frozenset(_STOP_WORDS)
_TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"
_TOKEN = re.compile(_TOKEN_PATTERN)

MIN_TERM_SHARE = 0.05
"""A term is distinctive only if at least this share of the segment's texts use it..."""

MIN_TERM_LIFT = 1.5
"""... and the segment's texts use it at least this many times more often than everyone's..."""

MIN_TERM_MEMBERS = 3
"""... and at least this many members wrote it: a word one member wrote (their name, their
company) is not a segment's topic, and must not single them out."""

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
        order = sorted(
            np.flatnonzero(row > 0),
            key=lambda j: (-round(float(row[j]), 9), -len(vocabulary[j]), vocabulary[j]),
        )
        result.append([str(vocabulary[j]) for j in order[:limit]])
    return result


def _terms(text: str) -> set[str]:
    return {
        token
        for token in _TOKEN.findall(text.lower())
        if len(token) >= 3 and token not in _STOP_SET
    }


def distinctive_terms(texts: Sequence[str], in_segment: np.ndarray, *, limit: int = 8) -> list[str]:
    """The words that set a segment's free texts apart, each from another sentence where it can.

    A term's weight is the share of the segment's texts using it times the log of its lift (that
    share over the share of all texts using it); terms below :data:`MIN_TERM_SHARE`,
    :data:`MIN_TERM_LIFT` or :data:`MIN_TERM_MEMBERS` are left out. Terms are picked greedily:
    each next term is scored on the texts that none of the terms already picked cover, so three
    terms tell three things rather than three words of one common sentence. Ties go to the
    longer word.

    Args:
        texts: One text per member (empty when the member wrote none).
        in_segment: Boolean mask of the segment's members, in the order of ``texts``.
        limit: Most terms returned.

    Returns:
        Terms, best first.
    """
    documents = [_terms(text) for text in texts]
    return _distinctive(documents, np.asarray(in_segment, dtype=bool), _overall(documents), limit)


def _overall(documents: Sequence[set[str]]) -> tuple[Counter[str], int]:
    """How many documents use each term, and how many documents have any term."""
    overall: Counter[str] = Counter()
    written = 0
    for terms in documents:
        if terms:
            overall.update(terms)
            written += 1
    return overall, written


def _distinctive(
    documents: Sequence[set[str]],
    mask: np.ndarray,
    everyone: tuple[Counter[str], int],
    limit: int,
) -> list[str]:
    overall, written = everyone
    inside = [terms for terms, keep in zip(documents, mask, strict=True) if keep and terms]
    if not inside:
        return []
    here: Counter[str] = Counter()
    for terms in inside:
        here.update(terms)
    lift = {term: (count / len(inside)) / (overall[term] / written) for term, count in here.items()}
    candidates = {
        term
        for term, count in here.items()
        if count >= MIN_TERM_MEMBERS
        and count / len(inside) >= MIN_TERM_SHARE
        and lift[term] >= MIN_TERM_LIFT
    }
    chosen: list[str] = []
    uncovered = inside
    while candidates and len(chosen) < limit:
        coverage: Counter[str] = Counter()
        for terms in uncovered:
            coverage.update(terms & candidates)
        if not coverage:  # every text covered: rank the rest on all the segment's texts
            coverage = Counter({term: here[term] for term in candidates})
        best = min(
            candidates,
            key=lambda t: (-coverage[t] * math.log(lift[t]), -len(t), t),
        )
        chosen.append(best)
        # One form of a word is enough ("contributor", "contributors").
        stem = best.rstrip("s")
        candidates = {term for term in candidates if term.rstrip("s") != stem}
        uncovered = [terms for terms in uncovered if best not in terms]
    return chosen


def _only(
    documents: Sequence[set[str]], keep: np.ndarray
) -> tuple[list[set[str]], tuple[Counter[str], int]]:
    """The documents where ``keep`` (the others emptied), with their term counts."""
    kept = [terms if flag else set() for terms, flag in zip(documents, keep, strict=True)]
    return kept, _overall(kept)


def _text_language(member_id: int, languages: Mapping[int, str] | None) -> str:
    if not languages:
        return ""
    return str(languages.get(member_id, "")).split("-")[0].lower()


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
    languages: Mapping[int, str] | None = None,
    label_answers: int = 2,
    label_terms: int = 3,
) -> list[SegmentDescription]:
    """A readable label and a card for each segment.

    The label joins the segment's most distinctive answers (from different questions, in
    English) and its most distinctive free-text terms (:func:`distinctive_terms`, among the texts
    of the segment's most common language when ``languages`` is given, so that a label does not
    mix languages), e.g. ``"Founder or executive · Measure the community's ROI · 'board,
    benchmark, startups'"``. A segment with neither gets its main lifecycle stage (``"Mostly
    dormant members"``). Two segments that would read the same get one more distinctive answer,
    then a number.

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
        languages: ``{member id: language}``, to take label terms from one language.
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
    corpus = _Corpus.of(member_ids, answers, texts, languages)
    parts_of: list[list[str]] = []
    spare_of: list[list[str]] = []
    cards: list[dict[str, Any]] = []
    for index in range(k):
        mask = segment_of == index
        distinctive = distinctive_answers(questionnaire, corpus.answers, mask)
        members_here = corpus.ids[mask]
        stages: Counter[str] = Counter(
            (lifecycle or {}).get(int(m), "unknown") for m in (members_here if lifecycle else ())
        )
        parts, spare = _answer_parts(distinctive, label_answers)
        parts += _label_end(corpus.label_terms(mask, label_terms), stages, bool(parts))
        parts_of.append(parts)
        spare_of.append(spare)
        cards.append(
            {
                "size": len(members_here),
                "share": round(len(members_here) / len(corpus.ids), 3) if len(corpus.ids) else 0.0,
                "distinctive": distinctive,
                "lifecycle": dict(sorted(stages.items())),
                "top_terms": _distinctive(corpus.documents, mask, corpus.everyone, 8),
                "examples": _examples(members_here, mask, distances),
            }
        )
    labels = _unique_labels(parts_of, spare_of)
    return [
        SegmentDescription(label=label[:300], card=card)
        for label, card in zip(labels, cards, strict=True)
    ]


@dataclass(frozen=True)
class _Corpus:
    """The members' answers and free-text terms, in the order of the segment indices."""

    ids: np.ndarray
    answers: list[Mapping[str, Any]]
    documents: list[set[str]]
    everyone: tuple[Counter[str], int]
    text_languages: np.ndarray
    has_text: np.ndarray
    by_language: dict[str, tuple[list[set[str]], tuple[Counter[str], int]]]

    @classmethod
    def of(
        cls,
        member_ids: Sequence[int],
        answers: Mapping[int, Mapping[str, Any]],
        texts: Mapping[int, str],
        languages: Mapping[int, str] | None,
    ) -> _Corpus:
        ids = np.asarray(member_ids)
        documents = [_terms(texts.get(int(member_id), "")) for member_id in ids]
        text_languages = np.asarray([_text_language(int(m), languages) for m in ids], dtype=object)
        has_text = np.asarray([bool(terms) for terms in documents], dtype=bool)
        return cls(
            ids=ids,
            answers=[answers.get(int(member_id), {}) for member_id in ids],
            documents=documents,
            everyone=_overall(documents),
            text_languages=text_languages,
            has_text=has_text,
            by_language={
                language: _only(documents, text_languages == language)
                for language in set(text_languages[has_text].tolist())
                if language
            },
        )

    def label_terms(self, mask: np.ndarray, count: int) -> list[str]:
        """The segment's most distinctive terms among the texts of its most common language."""
        spoken = Counter(self.text_languages[mask & self.has_text].tolist())
        label_language = spoken.most_common(1)[0][0] if spoken else ""
        if label_language in self.by_language:
            same_language, counts = self.by_language[label_language]
            return _distinctive(same_language, mask, counts, count)
        return _distinctive(self.documents, mask, self.everyone, 8)[:count]


def _answer_parts(
    distinctive: Sequence[Mapping[str, Any]], label_answers: int
) -> tuple[list[str], list[str]]:
    """The distinctive answers a label shows (one per question), and the spare ones."""
    parts: list[str] = []
    spare: list[str] = []
    used_questions: set[str] = set()
    for entry in distinctive:
        if entry["question"] in used_questions:
            continue
        used_questions.add(entry["question"])
        (parts if len(parts) < label_answers else spare).append(entry["label"])
    return parts, spare


def _label_end(words: Sequence[str], stages: Counter[str], has_answers: bool) -> list[str]:
    """The label's distinctive terms; without them nor answers, the main lifecycle stage."""
    if words:
        return ["'" + ", ".join(words) + "'"]
    if has_answers:
        return []
    top = stages.most_common(1)  # nothing distinctive: say who they are by lifecycle, at least
    return [f"Mostly {top[0][0].replace('_', ' ')} members" if top else "Mixed members"]


def _examples(
    members_here: np.ndarray, mask: np.ndarray, distances: np.ndarray | None
) -> list[int]:
    """The segment's three members closest to its centre (its first three without distances)."""
    if distances is not None and len(members_here):
        order = np.argsort(np.asarray(distances)[mask], kind="stable")
        return [int(member_id) for member_id in members_here[order][:3]]
    return [int(member_id) for member_id in members_here[:3]]


def _unique_labels(parts_of: list[list[str]], spare_of: list[list[str]]) -> list[str]:
    """Join each segment's label parts; labels that collide get a spare answer, then a number."""
    labels = [" · ".join(parts) for parts in parts_of]
    counts = Counter(labels)
    for index, label in enumerate(labels):
        if counts[label] > 1 and spare_of[index]:
            parts = parts_of[index]
            at = len(parts) - 1 if parts and parts[-1].startswith("'") else len(parts)
            labels[index] = " · ".join([*parts[:at], spare_of[index][0], *parts[at:]])
    seen: Counter[str] = Counter()
    counts = Counter(labels)
    for index, label in enumerate(labels):
        if counts[label] > 1:
            seen[label] += 1
            labels[index] = f"{label} ({seen[label]})"
    return labels
