"""YAML parsing that remembers where each value came from, and pydantic errors mapped to lines.

Marketers' files are read with PyYAML's safe loader (the same types as ``yaml.safe_load``), but
the node tree is kept long enough to record the line and column of every mapping key and list
item. A pydantic error location such as ``("questions", 2, "labels")`` can then be turned into a
:class:`~nurture.errors.Problem` that names the file, the line of the field and the field.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from nurture.errors import Problem

__all__ = [
    "FieldIssues",
    "LocatedDocument",
    "Position",
    "load_located_yaml",
    "problems_from_validation_error",
]

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a file."""

    line: int
    column: int


@dataclass
class LocatedDocument:
    """A parsed YAML document and the position of every key and list item in it.

    Attributes:
        data: The document as ``yaml.safe_load`` would return it.
        positions: Position of each node, keyed by its path (``("questions", 0, "key")``); for a
            mapping entry the position is the key's, so a problem points at the field name.
    """

    data: Any
    positions: dict[Loc, Position] = field(default_factory=dict)

    def locate(self, loc: Sequence[str | int]) -> Position | None:
        """The position of ``loc``, or of its nearest recorded ancestor (for a missing field).

        Args:
            loc: A path into the document, as in a pydantic error location.

        Returns:
            The position found, or ``None`` when not even the document root is recorded.
        """
        path = tuple(loc)
        while True:
            if path in self.positions:
                return self.positions[path]
            if not path:
                return None
            path = path[:-1]


class FieldIssues(ValueError):
    """Problems a model validator found, each at a path relative to the model being validated.

    Raised from pydantic validators so that programmatic callers get one ``ValueError`` listing
    everything, while file loaders can expand it into one located problem per issue.

    Attributes:
        issues: ``(relative_path, message)`` pairs.
    """

    def __init__(self, issues: Sequence[tuple[Loc, str]]) -> None:
        self.issues = list(issues)
        super().__init__(
            "; ".join(
                f"{'.'.join(str(part) for part in loc)}: {message}" if loc else message
                for loc, message in self.issues
            )
        )


def _mark_position(mark: yaml.Mark, line_offset: int) -> Position:
    return Position(line=mark.line + 1 + line_offset, column=mark.column + 1)


def _record_positions(
    node: yaml.Node,
    path: Loc,
    document: LocatedDocument,
    problems: list[Problem],
    source: Path | str,
    line_offset: int,
) -> None:
    document.positions.setdefault(path, _mark_position(node.start_mark, line_offset))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, Position] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            position = _mark_position(key_node.start_mark, line_offset)
            child = (*path, key)
            dotted = ".".join(str(part) for part in child)
            if key in seen:
                problems.append(
                    Problem(
                        source,
                        f"duplicate key {key!r}: already given on line {seen[key].line}; "
                        "the last value would silently win",
                        line=position.line,
                        column=position.column,
                        field=dotted,
                    )
                )
            else:
                seen[key] = position
            document.positions[child] = position
            _record_positions(value_node, child, document, problems, source, line_offset)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            document.positions[child] = _mark_position(item.start_mark, line_offset)
            _record_positions(item, child, document, problems, source, line_offset)


def load_located_yaml(
    text: str, source: Path | str, *, line_offset: int = 0
) -> tuple[LocatedDocument | None, list[Problem]]:
    """Parse one YAML document and record where each key and list item is.

    Args:
        text: The YAML text.
        source: The file it comes from, named in problems.
        line_offset: Lines before ``text`` in its file (front matter starts after a ``---`` line).

    Returns:
        The located document (``None`` when the YAML cannot be parsed) and the problems found:
        syntax errors and duplicate keys. An empty document gives ``data`` ``None``.
    """
    problems: list[Problem] = []
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return LocatedDocument(data=None), problems
        document = LocatedDocument(data=None)
        _record_positions(node, (), document, problems, source, line_offset)
        document.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = _mark_position(mark, line_offset) if mark else None
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        problems.append(
            Problem(
                source,
                f"invalid YAML: {reason or exc}",
                line=position.line if position else None,
                column=position.column if position else None,
            )
        )
        return None, problems
    except (yaml.YAMLError, ValueError) as exc:
        # e.g. a timestamp such as 2026-13-45 that matches the pattern but is no real date
        problems.append(Problem(source, f"invalid YAML value: {exc}"))
        return None, problems
    finally:
        loader.dispose()
    return document, problems


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types an annotation may hold (``X | None`` -> ``[X]``, ``list[X]`` kept)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return [annotation]


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class a location inside ``model`` points into, when it can be told."""
    current: Any = model
    for part in loc:
        candidates = _unwrap(current)
        if len(candidates) != 1:
            return None
        current = candidates[0]
        if isinstance(part, int):
            if typing.get_origin(current) is not list:
                return None
            current = typing.get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                return None
            current = current.model_fields[part].annotation
        else:
            return None
    candidates = _unwrap(current)
    if (
        len(candidates) == 1
        and isinstance(candidates[0], type)
        and issubclass(candidates[0], BaseModel)
    ):
        return candidates[0]
    return None


def _describe_found(value: Any) -> str:
    if isinstance(value, dict | list):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message_for(error: Any, model: type[BaseModel], loc: Loc) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        parent = _model_at(model, loc[:-1])
        allowed = sorted(parent.model_fields) if parent else []
        message = f"unknown field {name!r}"
        close = difflib.get_close_matches(name, allowed, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        if allowed:
            message += f" (expected one of: {', '.join(allowed)})"
        return message
    if kind == "missing":
        return f"missing required field {str(loc[-1])!r}" if loc else "missing required field"
    message = str(error["msg"]).removeprefix("Value error, ")
    if "input" in error and kind not in ("value_error", "assertion_error"):
        message += f"; found {_describe_found(error['input'])}"
    return message


def problems_from_validation_error(
    exc: ValidationError,
    model: type[BaseModel],
    document: LocatedDocument,
    source: Path | str,
) -> list[Problem]:
    """One located problem per pydantic error (or per issue of a :class:`FieldIssues`).

    Args:
        exc: The error pydantic raised validating ``document.data`` as ``model``.
        model: The model validated, used to suggest the field a typo meant.
        document: The located document, to find lines and columns.
        source: The file, named in each problem.

    Returns:
        The problems, in the order pydantic reported them.
    """
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(part for part in error["loc"] if isinstance(part, str | int))
        original = (error.get("ctx") or {}).get("error")
        if isinstance(original, FieldIssues):
            issues = [((*loc, *relative), message) for relative, message in original.issues]
        else:
            issues = [(loc, _message_for(error, model, loc))]
        for issue_loc, message in issues:
            position = document.locate(issue_loc)
            problems.append(
                Problem(
                    source,
                    message,
                    line=position.line if position else None,
                    column=position.column if position else None,
                    field=".".join(str(part) for part in issue_loc) or None,
                )
            )
    return problems
