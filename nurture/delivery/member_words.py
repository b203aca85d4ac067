"""What a member told us, as email templates read it: their answers in the email's language.

A message stores the member's answers as the questionnaire stores them (option keys, numbers,
texts; ``MessageContext.profile``). Templates read them under ``member.answers``, one entry per
question of the questionnaire, answered or not, so that a misspelt question is an error when
templates are validated, and an unanswered one is simply empty::

    member.answers.goals.answered   true
    member.answers.goals.question   "What do you want to achieve in the next six months?"
    member.answers.goals.value      ["grow_members", "run_events"]      (as stored)
    member.answers.goals.labels     ["Grow the number of members", "Run events"]
    member.answers.goals.text       "Grow the number of members and Run events"
    member.answers.goals.phrase     "grow the number of members and run events"

``labels`` are the options' labels in the email's language (a free text, a number or a date is
its own label); ``text`` joins them as the language lists things (Babel); ``phrase`` is the
same with each choice's first letter in lower case, to read inside a sentence (an acronym such
as "ROI" is kept; in a language that capitalises nouns, use ``text``). Without a
questionnaire (a renderer built without one), the stored answers are shown as stored and any
other question reads as unanswered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from babel import Locale, UnknownLocaleError
from babel.lists import format_list

__all__ = ["QuestionnaireLike", "answer_views", "empty_answer"]


class _Labels(Protocol):
    """Texts by language (the questionnaire's ``LocalizedText``)."""

    def get(self, language: str, default: str = ...) -> str:
        """The text in ``language``, else in ``default``."""
        ...


class _Option(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def labels(self) -> _Labels: ...


class _Question(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def labels(self) -> _Labels: ...

    @property
    def options(self) -> Sequence[_Option]: ...


class QuestionnaireLike(Protocol):
    """What templates need of the questionnaire: its questions and their options' labels.

    ``nurture.workspace.Questionnaire`` is one; the delivery package does not import it.
    """

    @property
    def questions(self) -> Sequence[_Question]:
        """The questions, in order."""
        ...


def empty_answer(question: str = "") -> dict[str, Any]:
    """What templates read for a question the member did not answer."""
    return {
        "answered": False,
        "question": question,
        "value": None,
        "labels": [],
        "text": "",
        "phrase": "",
    }


class _AnyQuestion(dict[str, dict[str, Any]]):
    """Answers without a questionnaire: a question not stored reads as unanswered."""

    def __missing__(self, key: str) -> dict[str, Any]:
        return empty_answer()


def _join(labels: list[str], language: str) -> str:
    try:
        locale = Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        locale = Locale.parse("en")
    return str(format_list(labels, locale=locale)) if labels else ""


def _lower_first(label: str) -> str:
    """``label`` with its first letter in lower case, unless it starts an acronym (``ROI``)."""
    if len(label) > 1 and label[1].isupper():
        return label
    return label[:1].lower() + label[1:]


def _labels(question: _Question | None, value: Any, language: str, default: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    labels: list[str] = []
    options = {option.key: option for option in question.options} if question else {}
    for entry in values:
        if entry is None or entry == "":
            continue
        option = options.get(str(entry))
        labels.append(option.labels.get(language, default) if option else str(entry))
    return labels


def answer_views(
    answers: Mapping[str, Any] | None,
    questionnaire: QuestionnaireLike | None,
    language: str,
    default_language: str = "en",
) -> dict[str, dict[str, Any]]:
    """The member's answers as templates read them (see the module docstring).

    Args:
        answers: The stored answers, ``{question key: value}``.
        questionnaire: The workspace's questionnaire: every question gets an entry, labels
            come from it, and no other question exists; None: the stored answers shown as
            stored, any other question unanswered.
        language: The email's language.
        default_language: The workspace's default language, for a label missing in
            ``language``.

    Returns:
        ``{question key: {answered, question, value, labels, text}}``.
    """
    stored = dict(answers or {})
    views: dict[str, dict[str, Any]] = {} if questionnaire is not None else _AnyQuestion()
    questions = list(questionnaire.questions) if questionnaire is not None else []
    known = {question.key: question for question in questions}
    for key in [*known, *(key for key in stored if key not in known)]:
        question = known.get(key)
        label = question.labels.get(language, default_language) if question else ""
        value = stored.get(key)
        labels = _labels(question, value, language, default_language)
        if not labels:
            views[key] = empty_answer(label)
            continue
        is_choice = question is not None and bool(question.options)
        views[key] = {
            "answered": True,
            "question": label,
            "value": value,
            "labels": labels,
            "text": _join(labels, language),
            "phrase": _join([_lower_first(text) for text in labels], language)
            if is_choice
            else _join(labels, language),
        }
    return views
