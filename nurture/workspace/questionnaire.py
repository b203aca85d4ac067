"""The questionnaire definition (``questionnaire.yaml``): typed models, loader, answer checks.

The questionnaire is what a member fills in on joining. Each question says how it is answered
(``kind``), how it reads in each language (``labels``) and whether its answer feeds profiling
(``profile``). Imports of answers go through :meth:`Questionnaire.validate_answer`, which refuses
an answer the definition does not allow and returns it in one canonical form.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nurture.errors import ImportRecordError, Problem, QuestionnaireValidationError
from nurture.languages import DEFAULT_LANGUAGES
from nurture.marketer_files.localized import LANGUAGES_CONTEXT, LocalizedText
from nurture.marketer_files.located_yaml import (
    DEFAULT_YAML_LIMITS,
    FieldIssues,
    LocatedDocument,
    YamlLimits,
)
from nurture.marketer_files.model_files import ModelFile, load_model_file

__all__ = [
    "AnswerValue",
    "Question",
    "QuestionKind",
    "QuestionOption",
    "Questionnaire",
    "load_questionnaire",
    "read_questionnaire",
]

QuestionKind = Literal["single_choice", "multiple_choice", "free_text", "scale", "date"]
"""How a question is answered."""

AnswerValue = str | int | list[str]
"""A normalised answer: an option key, a list of option keys, a number, a text or an ISO date."""

_KEY_PATTERN = r"^[a-z][a-z0-9_]*$"
_CHOICE_KINDS = ("single_choice", "multiple_choice")


class QuestionOption(BaseModel):
    """One option of a single- or multiple-choice question."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        pattern=_KEY_PATTERN,
        description="Stable identifier stored in answers (lower case, digits, underscores).",
    )
    labels: LocalizedText = Field(description="How the option reads in each language.")


class Question(BaseModel):
    """One question of the questionnaire."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        pattern=_KEY_PATTERN,
        description="Stable identifier of the question, used in answer imports and journeys.",
    )
    kind: QuestionKind = Field(description="How the question is answered.")
    labels: LocalizedText = Field(description="The question as members read it.")
    options: list[QuestionOption] = Field(
        default_factory=list,
        description="The allowed answers; required for choice questions, forbidden otherwise.",
    )
    required: bool = Field(default=False, description="Whether a member must answer it.")
    profile: bool = Field(
        default=True, description="Whether the answer feeds profiling and segmentation."
    )
    min: int | None = Field(default=None, description="Lowest value of a scale question.")
    max: int | None = Field(default=None, description="Highest value of a scale question.")

    @model_validator(mode="after")
    def _check_kind_consistency(self) -> Question:
        issues: list[tuple[tuple[str | int, ...], str]] = []
        if self.kind in _CHOICE_KINDS:
            if not self.options:
                issues.append((("options",), f"a {self.kind} question needs at least one option"))
            issues.extend(
                (("options", index, "key"), message)
                for index, message in _duplicate_issues([option.key for option in self.options])
            )
        elif self.options:
            issues.append((("options",), f"a {self.kind} question takes no options"))
        if self.kind == "scale":
            if self.min is None:
                issues.append((("min",), "a scale question needs 'min'"))
            if self.max is None:
                issues.append((("max",), "a scale question needs 'max'"))
            if self.min is not None and self.max is not None and self.min >= self.max:
                issues.append((("max",), f"'max' ({self.max}) must exceed 'min' ({self.min})"))
        else:
            for bound in ("min", "max"):
                if getattr(self, bound) is not None:
                    issues.append(((bound,), f"only a scale question takes {bound!r}"))
        if issues:
            raise FieldIssues(issues)
        return self

    @property
    def option_keys(self) -> list[str]:
        """The keys of the options, in their order."""
        return [option.key for option in self.options]


def _duplicate_issues(keys: list[Any], what: str = "option") -> list[tuple[int, str]]:
    """``(index, message)`` for each key already seen earlier in ``keys``."""
    first: dict[Any, int] = {}
    issues: list[tuple[int, str]] = []
    for index, key in enumerate(keys):
        if key in first:
            issues.append(
                (index, f"duplicate {what} key {key!r}: {what} {first[key] + 1} already uses it")
            )
        else:
            first.setdefault(key, index)
    return issues


class Questionnaire(BaseModel):
    """The questionnaire members fill in: a version and an ordered list of questions."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="Version of the definition; raise it on any change.")
    questions: list[Question] = Field(min_length=1, description="The questions, in order.")

    @model_validator(mode="after")
    def _check_unique_keys(self) -> Questionnaire:
        issues = _duplicate_issues([question.key for question in self.questions], "question")
        if issues:
            raise FieldIssues([(("questions", index, "key"), message) for index, message in issues])
        return self

    def question(self, key: str) -> Question:
        """The question with ``key``.

        Args:
            key: A question key.

        Returns:
            The question.

        Raises:
            KeyError: No question has this key.
        """
        for question in self.questions:
            if question.key == key:
                return question
        known = ", ".join(question.key for question in self.questions)
        raise KeyError(f"unknown question {key!r}; expected one of: {known}")

    @property
    def profile_questions(self) -> list[Question]:
        """The questions whose answers feed profiling, in order."""
        return [question for question in self.questions if question.profile]

    def option_label(self, key: str, option: str, language: str = "en") -> str:
        """How option ``option`` of question ``key`` reads in ``language`` (English fallback).

        Args:
            key: A question key.
            option: One of the question's option keys.
            language: A language code.

        Returns:
            The option's label.

        Raises:
            KeyError: The question or the option does not exist.
        """
        question = self.question(key)
        for candidate in question.options:
            if candidate.key == option:
                return candidate.labels.get(language)
        raise KeyError(
            f"question {key!r} has no option {option!r}; "
            f"expected one of: {', '.join(question.option_keys)}"
        )

    def validate_answer(self, key: str, value: Any) -> AnswerValue:
        """Check an answer against its question and return it in canonical form.

        Canonical forms: an option key (single choice); a list of option keys without repeats,
        in the order given (multiple choice, given as a list or as ``"a|b"``); an ``int``
        (scale); a stripped text (free text); an ISO ``YYYY-MM-DD`` string (date). Option keys
        match case-insensitively.

        Args:
            key: The question key.
            value: The answer as read from an import file.

        Returns:
            The normalised answer, ready to store as JSON.

        Raises:
            ImportRecordError: Unknown question, option not allowed, value of the wrong type or
                out of range (``field`` is the question key).
        """
        try:
            question = self.question(key)
        except KeyError as exc:
            raise ImportRecordError(str(exc.args[0]), field=key) from None
        if value is None:
            raise ImportRecordError("the answer is empty", field=key)
        if question.kind == "single_choice":
            if not isinstance(value, str):
                raise ImportRecordError(
                    f"expected one option key as text, found {type(value).__name__}", field=key
                )
            return _option_key(question, value)
        if question.kind == "multiple_choice":
            return _multiple_choice(question, value)
        if question.kind == "scale":
            return _scale(question, value)
        if question.kind == "date":
            return _date(question, value)
        if not isinstance(value, str):
            raise ImportRecordError(f"expected text, found {type(value).__name__}", field=key)
        return value.strip()


def _option_key(question: Question, value: str) -> str:
    wanted = value.strip()
    for option in question.options:
        if option.key == wanted or option.key == wanted.lower():
            return option.key
    raise ImportRecordError(
        f"option {wanted!r} is not allowed; expected one of: {', '.join(question.option_keys)}",
        field=question.key,
    )


def _multiple_choice(question: Question, value: Any) -> list[str]:
    if isinstance(value, str):
        items: list[Any] = [part for part in value.split("|") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ImportRecordError(
            f"expected a list of option keys or 'a|b' text, found {type(value).__name__}",
            field=question.key,
        )
    keys: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ImportRecordError(
                f"expected option keys as text, found {type(item).__name__}", field=question.key
            )
        key = _option_key(question, item)
        if key not in keys:
            keys.append(key)
    return keys


def _scale(question: Question, value: Any) -> int:
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            parsed = math.nan
        if math.isfinite(parsed) and parsed.is_integer():
            number = int(parsed)
    if number is None:
        raise ImportRecordError(
            f"expected a whole number from {question.min} to {question.max}, found {value!r}",
            field=question.key,
        )
    low = question.min if question.min is not None else number
    high = question.max if question.max is not None else number
    if not low <= number <= high:
        raise ImportRecordError(
            f"expected a number from {question.min} to {question.max}, found {number}",
            field=question.key,
        )
    return number


def _date(question: Question, value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise ImportRecordError(f"expected a date as YYYY-MM-DD, found {value!r}", field=question.key)


def read_questionnaire(
    path: Path | str,
    *,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    limits: YamlLimits = DEFAULT_YAML_LIMITS,
) -> ModelFile[Questionnaire]:
    """Read and check a questionnaire definition, collecting its problems rather than raising.

    Args:
        path: The YAML file (``questionnaire.yaml`` in a workspace).
        languages: The workspace's languages: every label is given in each of them.
        limits: The bounds on size, nesting and aliases.

    Returns:
        The questionnaire (``None`` on any problem) and every problem, each with its line and
        field.
    """
    path = Path(path)
    loaded = load_model_file(
        path,
        Questionnaire,
        expected="a mapping with 'version' and 'questions'",
        what="the questionnaire",
        context={LANGUAGES_CONTEXT: tuple(languages)},
        limits=limits,
    )
    document = loaded.document
    if loaded.value is None and document is not None and isinstance(document.data, dict):
        loaded.problems += _raw_duplicate_problems(document.data, document, path, loaded.problems)
    return loaded


def load_questionnaire(
    path: Path | str, *, languages: Sequence[str] = DEFAULT_LANGUAGES
) -> Questionnaire:
    """Read and check a questionnaire definition.

    Args:
        path: The YAML file (``questionnaire.yaml`` in a workspace).
        languages: The workspace's languages: every label is given in each of them.

    Returns:
        The questionnaire.

    Raises:
        QuestionnaireValidationError: The file is missing, is not valid YAML or does not describe
            a valid questionnaire; ``problems`` lists every problem with its line and field.
    """
    loaded = read_questionnaire(path, languages=languages)
    if loaded.value is None:
        raise QuestionnaireValidationError(loaded.problems)
    return loaded.value


def _raw_duplicate_problems(
    data: dict[str, Any], document: LocatedDocument, path: Path, already: list[Problem]
) -> list[Problem]:
    """Duplicate question keys, found on the raw data when the models could not be built."""
    questions = data.get("questions")
    if not isinstance(questions, list):
        return []
    keys = [item.get("key") if isinstance(item, dict) else None for item in questions]
    reported = {problem.field for problem in already}
    problems = []
    for index, message in _duplicate_issues(keys, "question"):
        if keys[index] is None:
            continue
        field = f"questions.{index}.key"
        if field in reported:
            continue
        position = document.locate(("questions", index, "key"))
        problems.append(
            Problem(
                path,
                message,
                line=position.line if position else None,
                column=position.column if position else None,
                field=field,
            )
        )
    return problems
