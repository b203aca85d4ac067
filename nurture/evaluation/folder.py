"""An external dataset given as files, and how nurture's engine sees it.

The folder holds ``members.csv``, ``items.csv``, ``train.csv`` and ``test.csv`` (the format is
in ``docs/evaluation.md``). Every file is checked before anything runs; an error lists each
problem with its file and line. For the engine, the dataset becomes a small workspace in a
sandbox: members' attribute columns become questionnaire questions (their answers feed
profiles and segments), the ``text`` column a free-text answer, items a content library, and
training interactions ``content_view`` events.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sqlalchemy import insert

from nurture.chunks import chunked
from nurture.errors import Problem
from nurture.evaluation.data import EvaluationData, EvaluationDataError, Interactions
from nurture.languages import DEFAULT_LANGUAGES
from nurture.runtime import Runtime
from nurture.storage import ActivityEvent, Answer, ConsentStatus, Member
from nurture.storage.models import table_of
from nurture.workspace import ContentItemSpec

__all__ = [
    "ITEM_COLUMNS",
    "MAX_OPTIONS",
    "MEMBER_COLUMNS",
    "REFERENCE_TIME",
    "TEXT_QUESTION",
    "FolderDataset",
    "library_items",
    "load_dataset_folder",
    "stage_folder",
]

MEMBER_COLUMNS = ("id", "language", "text")
"""Columns of ``members.csv`` with a fixed meaning; every other column is an attribute."""
ITEM_COLUMNS = ("id", "title", "text", "tags", "language")
"""Columns ``items.csv`` may have (``id`` and ``title`` are required)."""
INTERACTION_COLUMNS = ("member_id", "item_id", "weight", "timestamp")
"""Columns ``train.csv`` and ``test.csv`` may have (``member_id`` and ``item_id`` required)."""
MAX_OPTIONS = 100
"""An attribute with more distinct values than this is left out (an identifier, not a trait)."""
REFERENCE_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
"""When interactions without a timestamp happened (and the ranking time if none has one)."""
TEXT_QUESTION = "expectations"
"""Question key of the members' free text (the one nurture's reasons quote)."""
SEPARATOR = "|"
"""Separates the values of a multi-valued cell (tags, an attribute with several values)."""

_MAX_PROBLEMS = 50
_MAX_TITLE = 500  # the length of content_items.title
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class _Question:
    """A questionnaire question made from an attribute column."""

    key: str
    column: str
    kind: str
    options: dict[str, str] = field(default_factory=dict)  # value -> option key
    low: int | None = None
    high: int | None = None

    def answer(self, cell: str) -> Any:
        """The stored answer for a cell of this column (``None`` for an empty cell)."""
        cell = cell.strip()
        if not cell:
            return None
        if self.kind == "scale":
            return int(cell)
        if self.kind == "multiple_choice":
            values = [part.strip() for part in cell.split(SEPARATOR) if part.strip()]
            return list(dict.fromkeys(self.options[value] for value in values))
        return self.options[cell]

    def definition(self, languages: Sequence[str]) -> dict[str, Any]:
        """The question as ``questionnaire.yaml`` holds it, labelled in each of ``languages``."""
        labels = dict.fromkeys(languages, self.column)
        out: dict[str, Any] = {"key": self.key, "kind": self.kind, "labels": labels}
        if self.kind == "scale":
            out.update(min=self.low, max=self.high)
        elif self.options:
            out["options"] = [
                {"key": key, "labels": dict.fromkeys(languages, value)}
                for value, key in self.options.items()
            ]
        return out


@dataclass(frozen=True)
class FolderDataset:
    """A validated dataset folder.

    Attributes:
        path: The folder.
        member_ids: Each member's id, in file order (a member's row is its index).
        member_cells: Each member's cells by column.
        item_ids: Each item's id, in file order (an item's column is its index).
        item_cells: Each item's cells by column.
        train: Training interactions.
        test: Test interactions.
        train_times: When each training interaction happened.
        member_languages: Whether ``members.csv`` has a ``language`` column.
        item_languages: Whether ``items.csv`` has a ``language`` column.
        questions: The questions made from attribute columns.
        ignored_attributes: Attribute columns left out (too many distinct values).
        languages: The languages a ``language`` cell may hold (the workspace's), the default
            first.
    """

    path: Path
    member_ids: list[str]
    member_cells: list[dict[str, str]]
    item_ids: list[str]
    item_cells: list[dict[str, str]]
    train: Interactions
    test: Interactions
    train_times: list[dt.datetime]
    member_languages: bool
    item_languages: bool
    questions: list[_Question]
    ignored_attributes: list[str]
    languages: tuple[str, ...] = DEFAULT_LANGUAGES

    @property
    def now(self) -> dt.datetime:
        """The ranking time: the latest training interaction (:data:`REFERENCE_TIME` if none)."""
        return max(self.train_times, default=REFERENCE_TIME)

    @property
    def uses_languages(self) -> bool:
        """Whether languages count: only when both members and items have one."""
        return self.member_languages and self.item_languages

    def content_key(self, column: int) -> str:
        """The key of item ``column`` in the sandbox's content library."""
        return f"item-{column + 1}"

    def language(self, cells: dict[str, str]) -> str:
        """The language of a member or item row (the default one when languages do not count)."""
        default = self.languages[0]
        return (cells.get("language") or default) if self.uses_languages else default

    def member_groups(self) -> np.ndarray:
        """``(m, q)`` each member's value code in each single-choice attribute, ``-1`` if empty."""
        chosen = [question for question in self.questions if question.kind == "single_choice"]
        out = np.full((len(self.member_cells), len(chosen)), -1, dtype=np.int64)
        for position, question in enumerate(chosen):
            code = {value: index for index, value in enumerate(question.options)}
            for row, cells in enumerate(self.member_cells):
                out[row, position] = code.get(cells.get(question.column, "").strip(), -1)
        return out

    def evaluation_data(self) -> EvaluationData:
        """The dataset as evaluation data, items keyed as in the sandbox."""
        return EvaluationData.build(
            member_keys=list(self.member_ids),
            item_keys=[self.content_key(column) for column in range(len(self.item_ids))],
            train=self.train,
            test=self.test,
            now=self.now,
            member_language=(
                [self.language(cells) for cells in self.member_cells]
                if self.uses_languages
                else None
            ),
            item_language=(
                [self.language(cells) for cells in self.item_cells] if self.uses_languages else None
            ),
            member_groups=self.member_groups(),
            split={
                "kind": "given",
                "train": str(self.path / "train.csv"),
                "test": str(self.path / "test.csv"),
                "ranked_at": self.now.isoformat(),
            },
            counts={"ignored_attributes": len(self.ignored_attributes)},
        )


class _Problems:
    """Problems collected across files, capped so that a broken file does not flood the output."""

    def __init__(self) -> None:
        self.found: list[Problem] = []
        self.more = 0
        self.paths: set[Path] = set()  # files with a problem
        self.unreadable: set[Path] = set()  # files not read at all (missing, header, encoding)

    def add(
        self,
        path: Path,
        message: str,
        line: int | None = None,
        column: str | None = None,
        *,
        whole: bool = False,
    ) -> None:
        self.paths.add(path)
        if whole:
            self.unreadable.add(path)
        if len(self.found) < _MAX_PROBLEMS:
            self.found.append(Problem(path, message, line=line, field=column))
        else:
            self.more += 1

    def raise_if_any(self, folder: Path) -> None:
        if not self.found:
            return
        if self.more:
            self.found.append(Problem(folder, f"{self.more} more problems not shown"))
        raise EvaluationDataError(self.found)


def _rows(
    path: Path, required: tuple[str, ...], allowed: tuple[str, ...] | None, problems: _Problems
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, cells)`` of each record of a CSV file, after checking its header.

    Known column names match ignoring case and surrounding spaces; cells are stripped; rows
    whose cells are all empty are skipped; a row with more or fewer fields than the header is a
    problem.
    """
    if not path.is_file():
        problems.add(path, "file not found", whole=True)
        return
    known = {name.lower(): name for name in (*required, *(allowed or ()), *MEMBER_COLUMNS)}
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            first = next(reader, None)
            if first is None:
                problems.add(path, "the file is empty: expected a header line", whole=True)
                return
            header = [known.get(name.strip().lower(), name.strip()) for name in first]
            missing = [name for name in required if name not in header]
            unknown = [
                name for name in header if name and allowed is not None and name not in allowed
            ]
            duplicate = sorted({name for name in header if name and header.count(name) > 1})
            for name in missing:
                message = f"required column {name!r} is missing"
                problems.add(path, message, 1, name, whole=True)
            for name in unknown:
                expected = ", ".join(allowed or ())
                message = f"unknown column {name!r}; expected {expected}"
                problems.add(path, message, 1, name, whole=True)
            for name in duplicate:
                message = f"column {name!r} appears more than once"
                problems.add(path, message, 1, name, whole=True)
            unnamed = [number for number, name in enumerate(header, start=1) if not name]
            for number in unnamed:
                problems.add(path, f"column {number} has no name", 1, whole=True)
            if missing or unknown or duplicate or unnamed:
                return
            line = reader.line_num + 1
            for record in reader:
                cells = [cell.strip() for cell in record]
                if any(cells):
                    if len(cells) != len(header):
                        count = len(cells)
                        plural = "" if count == 1 else "s"
                        message = f"{count} field{plural} where the header has {len(header)}"
                        problems.add(path, message, line)
                    else:
                        yield line, dict(zip(header, cells, strict=True))
                line = reader.line_num + 1
    except UnicodeDecodeError as error:
        message = f"the file is not UTF-8 ({error.reason} at byte {error.start})"
        problems.add(path, message, whole=True)
    except csv.Error as error:
        problems.add(path, f"cannot read the CSV file: {error}", whole=True)


def _slug(value: str, prefix: str, taken: set[str]) -> str:
    slug = _SLUG.sub("_", value.lower()).strip("_")[:60].strip("_")
    if not slug or not slug[0].isalpha():
        slug = f"{prefix}_{slug}".rstrip("_")
    unique, number = slug, 1
    while unique in taken:
        number += 1
        unique = f"{slug}_{number}"
    taken.add(unique)
    return unique


def _is_integer(value: str) -> bool:
    return re.fullmatch(r"[+-]?\d+", value) is not None


def _questions(
    columns: list[str], cells: list[dict[str, str]]
) -> tuple[list[_Question], list[str]]:
    """Questions made from attribute columns, and the columns left out."""
    taken = {TEXT_QUESTION}
    questions: list[_Question] = []
    ignored: list[str] = []
    for column in columns:
        values = [row[column] for row in cells if row.get(column)]
        if values and all(_is_integer(value) for value in values):
            low, high = min(int(value) for value in values), max(int(value) for value in values)
            if low < high:
                key = _slug(column, "q", taken)
                questions.append(_Question(key, column, "scale", low=low, high=high))
                continue
        multiple = any(SEPARATOR in value for value in values)
        if multiple:
            distinct = [p.strip() for value in values for p in value.split(SEPARATOR) if p.strip()]
        else:
            distinct = values
        distinct = list(dict.fromkeys(distinct))
        if not distinct or len(distinct) > MAX_OPTIONS:
            ignored.append(column)
            continue
        option_keys: set[str] = set()
        options = {value: _slug(value, "o", option_keys) for value in distinct}
        kind = "multiple_choice" if multiple else "single_choice"
        questions.append(_Question(_slug(column, "q", taken), column, kind, options))
    return questions, ignored


def _weight(cell: str) -> float | None:
    if not cell:
        return 1.0
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _timestamp(cell: str) -> dt.datetime | None:
    try:
        if re.fullmatch(r"[+-]?\d+(\.\d+)?", cell):
            return dt.datetime.fromtimestamp(float(cell), tz=dt.UTC)
        moment = dt.datetime.fromisoformat(cell.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _identified(
    path: Path,
    rows: Iterator[tuple[int, dict[str, str]]],
    problems: _Problems,
    languages: Sequence[str],
) -> tuple[list[str], list[dict[str, str]]]:
    ids: list[str] = []
    cells: list[dict[str, str]] = []
    first: dict[str, int] = {}
    for line, row in rows:
        identifier = row.get("id", "")
        title = row.get("title")
        language = row.get("language")
        if not identifier:
            problems.add(path, "empty id", line, "id")
            continue
        if identifier in first:
            problems.add(
                path, f"duplicate id {identifier!r}: line {first[identifier]} has it", line
            )
            continue
        first[identifier] = line
        ids.append(identifier)
        cells.append(row)
        if language and language not in languages:
            expected = " or ".join(languages)
            problems.add(path, f"language {language!r}: expected {expected}", line, "language")
        if title is not None and not title:
            problems.add(path, "empty title", line, "title")
        elif title is not None and len(title) > _MAX_TITLE:
            problems.add(path, f"title longer than {_MAX_TITLE} characters", line, "title")
    return ids, cells


def _interactions(
    path: Path,
    member_row: dict[str, int],
    item_column: dict[str, int],
    problems: _Problems,
) -> tuple[Interactions, list[dt.datetime]]:
    members: list[int] = []
    items: list[int] = []
    weights: list[float] = []
    times: list[dt.datetime] = []
    for line, row in _rows(path, ("member_id", "item_id"), INTERACTION_COLUMNS, problems):
        member, item = member_row.get(row["member_id"]), item_column.get(row["item_id"])
        weight = _weight(row.get("weight", ""))
        moment = _timestamp(row["timestamp"]) if row.get("timestamp") else REFERENCE_TIME
        if member is None:
            problems.add(path, f"member {row['member_id']!r} is not in members.csv", line)
        if item is None:
            problems.add(path, f"item {row['item_id']!r} is not in items.csv", line)
        if weight is None:
            message = f"weight {row['weight']!r}: expected a positive number"
            problems.add(path, message, line, "weight")
        if moment is None:
            message = (
                f"timestamp {row['timestamp']!r}: expected ISO 8601 (2024-05-01T09:30:00Z) "
                "or Unix seconds"
            )
            problems.add(path, message, line, "timestamp")
        if member is None or item is None or weight is None or moment is None:
            continue
        members.append(member)
        items.append(item)
        weights.append(weight)
        times.append(moment)
    if not members and path not in problems.paths:
        problems.add(path, "no interaction")
    return Interactions.of(members, items, weights), times


def load_dataset_folder(
    folder: Path | str, *, languages: Sequence[str] = DEFAULT_LANGUAGES, with_test: bool = True
) -> FolderDataset:
    """Read and check a dataset folder (see ``docs/evaluation.md`` for the format).

    Args:
        folder: A folder with ``members.csv``, ``items.csv``, ``train.csv`` and ``test.csv``.
        languages: The languages a ``language`` cell may hold (the workspace's), the default
            first.
        with_test: Whether to read ``test.csv``; without, it is not opened at all and the
            dataset has no test interaction (tuning learns on the training data only).

    Returns:
        The dataset.

    Raises:
        EvaluationDataError: A file is missing, unreadable or invalid; every problem found
            (up to 50) is listed with its file and line.
    """
    folder = Path(folder)
    problems = _Problems()
    if not folder.is_dir():
        problems.add(folder, "dataset folder not found", whole=True)
        problems.raise_if_any(folder)
    members_path, items_path = folder / "members.csv", folder / "items.csv"
    member_ids, member_cells = _identified(
        members_path, _rows(members_path, ("id",), None, problems), problems, languages
    )
    item_ids, item_cells = _identified(
        items_path, _rows(items_path, ("id", "title"), ITEM_COLUMNS, problems), problems, languages
    )
    if problems.unreadable & {members_path, items_path}:
        # Interactions name members and items: checking them now would only repeat the problem.
        problems.raise_if_any(folder)
    member_row = {identifier: row for row, identifier in enumerate(member_ids)}
    item_column = {identifier: column for column, identifier in enumerate(item_ids)}
    train, train_times = _interactions(folder / "train.csv", member_row, item_column, problems)
    test = (
        _interactions(folder / "test.csv", member_row, item_column, problems)[0]
        if with_test
        else Interactions.of([], [])
    )
    problems.raise_if_any(folder)
    attributes = [
        name for name in (member_cells[0] if member_cells else {}) if name not in MEMBER_COLUMNS
    ]
    questions, ignored = _questions(attributes, member_cells)
    return FolderDataset(
        path=folder,
        member_ids=member_ids,
        member_cells=member_cells,
        item_ids=item_ids,
        item_cells=item_cells,
        train=train,
        test=test,
        train_times=train_times,
        member_languages=bool(member_cells) and "language" in member_cells[0],
        item_languages=bool(item_cells) and "language" in item_cells[0],
        questions=questions,
        ignored_attributes=ignored,
        languages=tuple(languages),
    )


def _first_sentence(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    match = re.match(r"(.+?[.!?])(\s|$)", flat)
    sentence = match.group(1) if match else flat
    return sentence if len(sentence) <= limit else sentence[:limit].rsplit(" ", 1)[0] + "…"


def _write_workspace(dataset: FolderDataset, workspace: Path) -> None:
    """The sandbox workspace's files: its languages, and a questionnaire from the attributes."""
    questions = [question.definition(dataset.languages) for question in dataset.questions]
    questions.append(
        {
            "key": TEXT_QUESTION,
            "kind": "free_text",
            "labels": dict.fromkeys(dataset.languages, "text"),
        }
    )
    (workspace / "workspace.yaml").write_text(
        yaml.safe_dump({"languages": list(dataset.languages)}), encoding="utf-8"
    )
    (workspace / "questionnaire.yaml").write_text(
        yaml.safe_dump({"version": 1, "questions": questions}, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )


def library_items(dataset: FolderDataset) -> list[ContentItemSpec]:
    """The sandbox's content library: one article per item, sorted by key as a library is.

    Each item is what a library file with the same front matter would give (title, tags, its
    text as body and first sentence as summary), checked by the same model, without writing
    and parsing one Markdown file per item (a catalogue of 72 000 questions spent minutes
    there).

    Args:
        dataset: The dataset.

    Returns:
        The items, as :attr:`nurture.runtime.LoadedWorkspace.content_items` holds them.
    """
    source = str(dataset.path / "items.csv")
    items = []
    for column, cells in enumerate(dataset.item_cells):
        text = cells.get("text") or cells["title"]
        items.append(
            ContentItemSpec(
                key=dataset.content_key(column),
                title=cells["title"],
                url=f"https://evaluation.invalid/items/{column + 1}",
                kind="article",
                language=dataset.language(cells),
                tags=[tag.strip() for tag in cells.get("tags", "").split(SEPARATOR) if tag.strip()],
                summary=_first_sentence(text),
                body=text,
                source_path=source,
            )
        )
    return sorted(items, key=lambda spec: spec.key)


def stage_folder(dataset: FolderDataset, sandbox: Runtime) -> dict[str, int]:
    """Turn the dataset into the sandbox's workspace and database, ready for the engine.

    Members get the ids ``1..m`` in file order, answers dated at the ranking time, and one
    ``content_view`` per training interaction (the weight kept in its properties). A member
    joined at their first training interaction, or at the ranking time without any. The items
    become the sandbox workspace's library (:func:`library_items`), which the nightly's content
    stage syncs and embeds.

    Args:
        dataset: The dataset.
        sandbox: The runtime of an empty sandbox (see
            :func:`nurture.evaluation.nurture_sandbox`).

    Returns:
        ``{member id in the dataset: member id in the sandbox}``.
    """
    _write_workspace(dataset, sandbox.settings.workspace)
    # The library is handed over parsed, as LoadedWorkspace.of does with a checked workspace.
    sandbox.workspace.__dict__["content_items"] = library_items(dataset)
    now = dataset.now
    first_seen = [now] * len(dataset.member_ids)
    for member, moment in zip(dataset.train.member, dataset.train_times, strict=True):
        first_seen[member] = min(first_seen[member], moment)
    members = [
        {
            "id": row + 1,
            "email": f"member-{row + 1}@evaluation.invalid",
            "language": dataset.language(cells),
            "joined_at": first_seen[row],
            "consent_status": ConsentStatus.GRANTED,
            "attributes": {},
        }
        for row, cells in enumerate(dataset.member_cells)
    ]
    answers: list[dict[str, Any]] = []
    for row, cells in enumerate(dataset.member_cells):
        for question in dataset.questions:
            value = question.answer(cells.get(question.column, ""))
            if value not in (None, []):
                answers.append({"member_id": row + 1, "question_key": question.key, "value": value})
        if cells.get("text"):
            answers.append(
                {"member_id": row + 1, "question_key": TEXT_QUESTION, "value": cells["text"]}
            )
    for answer in answers:
        answer["answered_at"] = now
    events = [
        {
            "member_id": int(member) + 1,
            "type": "content_view",
            "occurred_at": moment,
            "content_key": dataset.content_key(int(item)),
            "properties": {"weight": float(weight)},
            "idempotency_key": f"evaluation:{number}",
        }
        for number, (member, item, weight, moment) in enumerate(
            zip(
                dataset.train.member,
                dataset.train.item,
                dataset.train.weight,
                dataset.train_times,
                strict=True,
            )
        )
    ]
    with sandbox.session() as session:
        for table, rows in (
            (table_of(Member), members),
            (table_of(Answer), answers),
            (table_of(ActivityEvent), events),
        ):
            for batch in chunked(rows, 1000):
                session.execute(insert(table), batch)
    return {identifier: row + 1 for row, identifier in enumerate(dataset.member_ids)}
