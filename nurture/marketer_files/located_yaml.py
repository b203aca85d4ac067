"""The one way nurture reads a YAML file a marketer wrote: safe, bounded, and with positions.

Every marketer file (journeys, ``sending.yaml``, ``segments.yaml``, ``questionnaire.yaml``,
``workspace.yaml`` and the front matter of library items) goes through
:func:`parse_located_yaml`, after :func:`read_marketer_text` when it comes from disk:

- **Safe**: PyYAML's safe loader, so the same types as ``yaml.safe_load`` and no code runs.
- **Positions**: the line and column of every mapping key and list item is kept, so that a
  pydantic error location such as ``("questions", 2, "labels")`` becomes a
  :class:`~nurture.errors.Problem` naming the file, line, column and field.
- **Duplicate keys** are refused (``duplicate key 'subject': already given on line 10``),
  where a plain loader lets the last value silently win.
- **Bounded** (:class:`YamlLimits`): a file larger than ``max_bytes`` is refused before it is
  parsed; a collection nested deeper than ``max_depth`` is refused while it is composed (no
  ``RecursionError``); aliases are refused once the nodes they stand for add up to more than
  ``max_alias_nodes`` (a "billion laughs" file is refused at its first few levels, in
  microseconds and without building anything); a recursive alias is refused. Bytes that are not
  UTF-8 (a Latin-1 file) and characters YAML forbids are refused. Each refusal names the
  file, line and column.
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
    "DEFAULT_YAML_LIMITS",
    "MAX_ALIAS_NODES",
    "MAX_FILE_BYTES",
    "MAX_NESTING_DEPTH",
    "FieldIssues",
    "Loc",
    "LocatedDocument",
    "Position",
    "YamlLimits",
    "parse_located_yaml",
    "problems_from_validation_error",
    "read_marketer_text",
]

MAX_FILE_BYTES = 1_048_576
"""Largest marketer file read (1 MiB): hand-written YAML and Markdown are far smaller."""

MAX_NESTING_DEPTH = 50
"""Deepest nesting of lists and mappings (aliases included); journeys need fewer than ten."""

MAX_ALIAS_NODES = 10_000
"""Most nodes that all the aliases of one document may stand for, counted as if expanded."""

Loc = tuple[str | int, ...]
"""A path into a document: mapping keys and list indexes (``("steps", 2, "next")``)."""


@dataclass(frozen=True)
class YamlLimits:
    """The bounds a marketer file is read within (see the module docstring).

    Attributes:
        max_bytes: Largest file, in bytes.
        max_depth: Deepest nesting of lists and mappings.
        max_alias_nodes: Most nodes the aliases of a document may stand for, once expanded.
    """

    max_bytes: int = MAX_FILE_BYTES
    max_depth: int = MAX_NESTING_DEPTH
    max_alias_nodes: int = MAX_ALIAS_NODES


DEFAULT_YAML_LIMITS = YamlLimits()
"""The limits every loader uses unless given others."""


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

    def find(self, loc: Sequence[Any]) -> tuple[Loc, Position | None]:
        """The deepest recorded node along ``loc``, and its position.

        Path elements that name no node (a union tag such as ``send`` in a pydantic location,
        a field that is missing) are skipped, so a missing field points at the mapping that
        should hold it.

        Args:
            loc: A path into the document, as in a pydantic error location.

        Returns:
            The part of ``loc`` found and its position (``None`` when not even the root is
            recorded).
        """
        found: Loc = ()
        for element in loc:
            if isinstance(element, str | int) and (*found, element) in self.positions:
                found = (*found, element)
        return found, self.positions.get(found)

    def locate(self, loc: Sequence[Any]) -> Position | None:
        """The position of ``loc``, or of its deepest recorded ancestor (for a missing field).

        Args:
            loc: A path into the document, as in a pydantic error location.

        Returns:
            The position found, or ``None`` when not even the document root is recorded.
        """
        return self.find(loc)[1]


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


# --- reading --------------------------------------------------------------------------------


def _position_in_bytes(data: bytes, offset: int) -> Position:
    """The line and column (in characters) of byte ``offset``; the bytes before it are UTF-8."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    prefix = data[line_start:offset].decode("utf-8", errors="replace").lstrip("\ufeff")
    return Position(line=data.count(b"\n", 0, offset) + 1, column=len(prefix) + 1)


def _megabytes(size: int) -> str:
    return f"{size / 1_048_576:.1f} MiB" if size >= 1_048_576 else f"{size} bytes"


def read_marketer_text(
    path: Path, *, limits: YamlLimits = DEFAULT_YAML_LIMITS, what: str = "the file"
) -> tuple[str | None, list[Problem]]:
    """Read a marketer file as UTF-8 text (a BOM allowed), within ``limits.max_bytes``.

    Only ``max_bytes + 1`` bytes are ever read, so a huge file costs nothing.

    Args:
        path: The file.
        limits: The bounds; only ``max_bytes`` is used here.
        what: What the file is, for the message when it cannot be opened.

    Returns:
        The text (``None`` when refused) and the problem refusing it: the file cannot be
        opened, is larger than the limit (at the line and column where the limit is crossed),
        or holds a byte that is not UTF-8 (at its line and column).
    """
    try:
        with path.open("rb") as stream:
            data = stream.read(limits.max_bytes + 1)
    except FileNotFoundError:
        return None, [Problem(path, f"cannot read {what}: no such file")]
    except OSError as exc:
        return None, [Problem(path, f"cannot read {what}: {exc.strerror or exc}")]
    if len(data) > limits.max_bytes:
        try:
            size = path.stat().st_size
        except OSError:
            size = len(data)
        where = _position_in_bytes(data, limits.max_bytes)
        return None, [
            Problem(
                path,
                f"file too large: {_megabytes(size)}, expected at most "
                f"{_megabytes(limits.max_bytes)} (the limit is crossed here); split it or "
                "shorten it",
                line=where.line,
                column=where.column,
            )
        ]
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        where = _position_in_bytes(data, exc.start)
        return None, [
            Problem(
                path,
                f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded (a file saved "
                "as Latin-1 or Windows-1252?); save it as UTF-8",
                line=where.line,
                column=where.column,
            )
        ]


# --- parsing --------------------------------------------------------------------------------


class _LimitError(yaml.MarkedYAMLError):
    """A document goes beyond a :class:`YamlLimits` bound (raised while composing it)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that measures nodes as it composes them and records positions.

    Every composed node gets its size (nodes, aliases expanded) and its height (nesting levels)
    so that an alias is charged what it stands for without expanding anything.
    """

    def __init__(self, text: str, limits: YamlLimits, line_offset: int) -> None:
        super().__init__(text)
        self.limits = limits
        self.line_offset = line_offset
        self.positions: dict[Loc, Position] = {}
        self.duplicates: list[tuple[Loc, str, Position, Position]] = []
        self._measures: dict[int, tuple[int, int]] = {}  # id(node) -> (size, height)
        self._alias_nodes = 0
        self._depth = 0
        self._paths: list[Loc | None] = []
        self._keys: dict[int, dict[str, Position]] = {}  # id(mapping node) -> key -> position

    def position(self, mark: yaml.Mark) -> Position:
        """A PyYAML mark as a 1-based position in the file."""
        return Position(line=mark.line + 1 + self.line_offset, column=mark.column + 1)

    def _path_of(self, parent: yaml.Node | None, index: Any) -> Loc | None:
        """The path of the node about to be composed; ``None`` inside a mapping key."""
        if parent is None:
            return ()
        parent_path = self._paths[-1] if self._paths else None
        if parent_path is None:
            return None
        if isinstance(parent, yaml.SequenceNode):
            return (*parent_path, index)
        if index is None:  # a mapping key: no path of its own
            return None
        key = str(index.value) if isinstance(index, yaml.ScalarNode) else "?"
        return (*parent_path, key)

    def _record(self, parent: yaml.Node | None, index: Any, path: Loc) -> None:
        if isinstance(parent, yaml.MappingNode):
            position = self.position(index.start_mark)
            if isinstance(index, yaml.ScalarNode):
                seen = self._keys.setdefault(id(parent), {})
                first = seen.get(index.value)
                if first is not None:
                    self.duplicates.append((path, str(index.value), first, position))
                else:
                    seen[index.value] = position
        else:
            position = self.position(self._peek().start_mark)
        self.positions[path] = position

    def _peek(self) -> Any:
        """The next parser event (PyYAML's stubs leave ``peek_event`` untyped)."""
        return self.peek_event()  # type: ignore[no-untyped-call]

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        path = self._path_of(parent, index)
        if path is not None:
            self._record(parent, index, path)
        if self.check_event(yaml.AliasEvent):
            return self._compose_alias()
        is_collection = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if is_collection:
            self._depth += 1
            if self._depth > self.limits.max_depth:
                raise _LimitError(
                    None,
                    None,
                    f"nested deeper than {self.limits.max_depth} levels of lists and mappings",
                    self._peek().start_mark,
                )
        self._paths.append(path)
        try:
            node = typing.cast(yaml.Node, super().compose_node(parent, index))
        finally:
            self._paths.pop()
            if is_collection:
                self._depth -= 1
        self._measure(node)
        return node

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # The scanner looks ahead over a whole line of ``[[[[...`` at a cost that grows with
        # the square of the flow depth: refuse the depth here, before the composer would.
        if self.flow_level >= self.limits.max_depth:
            raise _LimitError(
                None,
                None,
                f"nested deeper than {self.limits.max_depth} levels of lists and mappings",
                self.get_mark(),
            )
        super().fetch_flow_collection_start(TokenClass)

    def _compose_alias(self) -> yaml.Node:
        event = self._peek()
        node = self.anchors.get(event.anchor)
        if node is None:
            # PyYAML's own "undefined alias" error
            return typing.cast(yaml.Node, super().compose_node(None, None))  # type: ignore[arg-type]
        measure = self._measures.get(id(node))
        if measure is None:
            raise _LimitError(
                None,
                None,
                f"alias *{event.anchor} refers to a node that contains it (a recursive alias)",
                event.start_mark,
            )
        size, height = measure
        self._alias_nodes += size
        if self._alias_nodes > self.limits.max_alias_nodes:
            raise _LimitError(
                None,
                None,
                f"aliases stand for more than {self.limits.max_alias_nodes} nodes in all "
                f"(alias *{event.anchor} alone for {size}); write the values out or use fewer "
                "aliases",
                event.start_mark,
            )
        if self._depth + height > self.limits.max_depth:
            raise _LimitError(
                None,
                None,
                f"alias *{event.anchor} nests deeper than {self.limits.max_depth} levels of "
                "lists and mappings",
                event.start_mark,
            )
        self.get_event()  # type: ignore[no-untyped-call]  # PyYAML's stubs leave it untyped
        return node

    def _measure(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            self._measures[id(node)] = (1, 0)
            return
        measures = [self._measures[id(child)] for child in children]
        self._measures[id(node)] = (
            1 + sum(size for size, _ in measures),
            1 + max((height for _, height in measures), default=0),
        )

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            # e.g. a date such as 2026-13-45 that matches the pattern but is no real date
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid value: {exc}", node.start_mark
            ) from None


def _reader_problem(
    exc: yaml.reader.ReaderError, text: str, source: Path | str, line_offset: int
) -> Problem:
    """A character YAML forbids (NUL, most control characters), at its line and column."""
    character = exc.character if isinstance(exc.character, int) else ord(exc.character)
    line_start = text.rfind("\n", 0, exc.position) + 1
    return Problem(
        source,
        f"invalid YAML: character U+{character:04X} is not allowed in a YAML file",
        line=text.count("\n", 0, exc.position) + 1 + line_offset,
        column=exc.position - line_start + 1,
    )


def parse_located_yaml(
    text: str,
    source: Path | str,
    *,
    line_offset: int = 0,
    limits: YamlLimits = DEFAULT_YAML_LIMITS,
) -> tuple[LocatedDocument | None, list[Problem]]:
    """Parse one YAML document safely, within ``limits``, recording where each value is.

    Args:
        text: The YAML text.
        source: The file it comes from, named in problems.
        line_offset: Lines before ``text`` in its file (front matter starts after a ``---`` line).
        limits: The bounds on nesting and aliases (the size is checked when reading).

    Returns:
        The located document (``None`` when the YAML cannot be parsed or goes beyond a limit)
        and the problems found: syntax errors, limits, duplicate keys. An empty document gives
        ``data`` ``None``. Every problem has a line and column.
    """
    problems: list[Problem] = []
    try:
        loader = _BoundedLoader(text, limits, line_offset)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. NUL
        problems.append(_reader_problem(exc, text, source, line_offset))
        return None, problems
    try:
        node = loader.get_single_node()
        for path, key, first, position in loader.duplicates:
            problems.append(
                Problem(
                    source,
                    f"duplicate key {key!r}: already given on line {first.line}; expected each "
                    "key once",
                    line=position.line,
                    column=position.column,
                    field=".".join(str(part) for part in path),
                )
            )
        if node is None:
            return LocatedDocument(data=None, positions=loader.positions), problems
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = loader.position(mark) if mark else None
        reason = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        prefix = "" if isinstance(exc, _LimitError) else "invalid YAML: "
        problems.append(
            Problem(
                source,
                prefix + reason,
                line=where.line if where else None,
                column=where.column if where else None,
            )
        )
        return None, problems
    except yaml.reader.ReaderError as exc:
        problems.append(_reader_problem(exc, text, source, line_offset))
        return None, problems
    finally:
        loader.dispose()
    return LocatedDocument(data=data, positions=loader.positions), problems


# --- pydantic errors ------------------------------------------------------------------------


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
