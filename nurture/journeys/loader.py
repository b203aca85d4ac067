"""Load journey YAML files: check the shape, then the graph, and report every problem at once.

Each problem names the file, the line and column, the field (``steps.2.next``) and, for a step,
its id. The YAML is read by the workspace's one bounded, line-aware reader
(:mod:`nurture.marketer_files.located_yaml`), so every value keeps its position.

Besides the model's own checks, a journey is checked against its workspace when the caller
knows it: the email templates its send steps name, the rule segments its triggers and conditions
name, and the question keys its conditions read under ``answers``. Whatever the workspace, its
conditions are checked against the journey itself: the send steps ``opened()`` and
``clicked()`` name, the fields its trigger records (``trigger.topic``) and the lifecycle stages
compared.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import AfterValidator, BaseModel, Tag, ValidationError
from pydantic.fields import FieldInfo

from nurture.errors import JourneyValidationError, Problem
from nurture.journeys.conditions import check_condition, check_condition_names
from nurture.journeys.models import Condition, JourneyDefinition, SegmentKey
from nurture.journeys.triggers import TRIGGER_CONTEXTS
from nurture.marketer_files.located_yaml import DEFAULT_YAML_LIMITS, LocatedDocument, YamlLimits
from nurture.marketer_files.model_files import read_yaml_document

__all__ = [
    "CLUSTER_KEY_PATTERN",
    "JOURNEY_SUFFIXES",
    "load_journey",
    "load_journeys",
    "read_journey",
    "read_journeys",
]

JOURNEY_SUFFIXES = (".yaml", ".yml")
"""File suffixes read as journeys by ``load_journeys``."""

CLUSTER_KEY_PATTERN = r"^seg-\d+$"
"""Cluster segment keys: always accepted, since clustering finds its segments at run time."""

TEMPLATE_SUFFIXES = (".html.j2", ".txt.j2")
"""Every send step's template needs both variants in the templates folder."""

PathKey = tuple[str | int, ...]

_CLUSTER_KEY = re.compile(CLUSTER_KEY_PATTERN)
# A condition field carries the Condition type's validator; a segment key field its title.
_CONDITION_CHECKS = [m for m in typing.get_args(Condition)[1:] if isinstance(m, AfterValidator)]
_SEGMENT_KEY_TITLES = {m.title for m in typing.get_args(SegmentKey)[1:] if isinstance(m, FieldInfo)}
_PARSING = ImmutableSandboxedEnvironment()  # only parses conditions; the sandbox all the same


class _Report:
    """Problems found in one file, placed with the positions of its located document."""

    def __init__(self, path: Path, document: LocatedDocument) -> None:
        self.path = path
        self.document = document
        self.data = document.data
        self.problems: list[Problem] = []

    def add(self, message: str, location: Sequence[Any] = (), missing: str | None = None) -> None:
        """Record a problem at ``location``; ``missing`` names a required field not given."""
        found, position = self.document.find(location)
        line = position.line if position else None
        column = position.column if position else None
        step_id = self._step_id(found)
        if step_id is not None:
            message = f"step {step_id!r}: {message}"
        field = ".".join(str(part) for part in (*found, *([missing] if missing else []))) or None
        self.problems.append(Problem(str(self.path), message, line, column, field))

    def has_problem_at(self, path: Sequence[Any]) -> bool:
        """Whether a problem was already recorded for the field at ``path``."""
        field = ".".join(str(part) for part in path)
        return any(problem.field == field for problem in self.problems)

    def _step_id(self, found: PathKey) -> str | None:
        if len(found) < 2 or found[0] != "steps" or not isinstance(found[1], int):
            return None
        steps = self.data.get("steps") if isinstance(self.data, dict) else None
        step = steps[found[1]] if isinstance(steps, list) else None
        step_id = step.get("id") if isinstance(step, dict) else None
        return step_id if isinstance(step_id, str) else None


def load_journey(
    path: Path | str,
    templates_dir: Path | str | None = None,
    *,
    segment_keys: Collection[str] | None = None,
    question_keys: Sequence[str] | None = None,
) -> JourneyDefinition:
    """Load one journey YAML file and check its shape and its graph.

    Args:
        path: The journey file.
        templates_dir: The email templates folder; when given, every send step's
            ``<template>.html.j2`` and ``<template>.txt.j2`` must exist there.
        segment_keys: The rule segment keys of the workspace; when given, a trigger or a
            condition naming another segment (other than a cluster key such as ``seg-3``) is a
            problem.
        question_keys: The questionnaire's question keys; when given, a condition reading
            another ``answers.<key>`` is a problem.

    Returns:
        The definition, with ``source_path`` set and its ``definition_hash``.

    Raises:
        JourneyValidationError: Every problem found, each with file, line, column and field.
    """
    definition, problems = read_journey(
        path, templates_dir, segment_keys=segment_keys, question_keys=question_keys
    )
    if problems or definition is None:
        raise JourneyValidationError(problems)
    return definition


def read_journey(
    path: Path | str,
    templates_dir: Path | str | None = None,
    *,
    segment_keys: Collection[str] | None = None,
    question_keys: Sequence[str] | None = None,
    limits: YamlLimits = DEFAULT_YAML_LIMITS,
) -> tuple[JourneyDefinition | None, list[Problem]]:
    """Load one journey file, collecting its problems rather than raising.

    Args:
        path: The journey file.
        templates_dir: The email templates folder, to check that every template exists.
        segment_keys: The rule segment keys of the workspace, to check the segments named.
        question_keys: The questionnaire's question keys, to check ``answers.<key>`` reads.
        limits: The bounds on size, nesting and aliases.

    Returns:
        The definition (``None`` on any problem) and every problem, each with file, line,
        column and field.
    """
    workspace = _Workspace(templates_dir, segment_keys, question_keys, limits)
    definition, problems, _ = _load(Path(path), workspace)
    return definition, problems


def read_journeys(
    directory: Path | str,
    templates_dir: Path | str | None = None,
    *,
    segment_keys: Collection[str] | None = None,
    question_keys: Sequence[str] | None = None,
    limits: YamlLimits = DEFAULT_YAML_LIMITS,
) -> tuple[list[JourneyDefinition], list[Problem]]:
    """Load every journey file of a folder, collecting problems rather than raising.

    Args:
        directory: The journeys folder.
        templates_dir: The email templates folder, to check that every template exists.
        segment_keys: The rule segment keys of the workspace, to check the segments named.
        question_keys: The questionnaire's question keys, to check ``answers.<key>`` reads.
        limits: The bounds on size, nesting and aliases of each file.

    Returns:
        The valid definitions, in file name order, and every problem of every file, including
        two files with one id.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return [], [Problem(str(directory), "expected a folder of journey YAML files, found none")]
    workspace = _Workspace(templates_dir, segment_keys, question_keys, limits)
    definitions: list[JourneyDefinition] = []
    problems: list[Problem] = []
    first_file_of: dict[str, str] = {}
    for path in _journey_files(directory):
        definition, file_problems, document = _load(path, workspace)
        problems += file_problems
        if definition is None or document is None:
            continue
        if definition.id in first_file_of:
            position = document.locate(["id"])
            problems.append(
                Problem(
                    str(path),
                    f"journey id {definition.id!r} is already used by "
                    f"{first_file_of[definition.id]}; expected a unique id",
                    position.line if position else None,
                    position.column if position else None,
                    "id",
                )
            )
            continue
        first_file_of[definition.id] = str(path)
        definitions.append(definition)
    return definitions, problems


def load_journeys(
    directory: Path | str,
    templates_dir: Path | str | None = None,
    *,
    segment_keys: Collection[str] | None = None,
    question_keys: Sequence[str] | None = None,
) -> list[JourneyDefinition]:
    """Load every journey file (``*.yaml``, ``*.yml``) of a folder, in file name order.

    Args:
        directory: The journeys folder.
        templates_dir: The email templates folder, to check that every template exists.
        segment_keys: The rule segment keys of the workspace, to check the segments named.
        question_keys: The questionnaire's question keys, to check ``answers.<key>`` reads.

    Returns:
        The definitions, in file name order.

    Raises:
        JourneyValidationError: Every problem of every file, including two files with one id.
    """
    definitions, problems = read_journeys(
        directory, templates_dir, segment_keys=segment_keys, question_keys=question_keys
    )
    if problems:
        raise JourneyValidationError(problems)
    return definitions


class _Workspace:
    """What a journey is checked against beyond its own file; ``None`` skips that check."""

    def __init__(
        self,
        templates_dir: Path | str | None,
        segment_keys: Collection[str] | None,
        question_keys: Sequence[str] | None,
        limits: YamlLimits,
    ) -> None:
        self.limits = limits
        self.templates_dir = Path(templates_dir) if templates_dir else None
        self.segment_keys: list[str] | None = None
        if segment_keys is not None:  # named in messages: in file order, else sorted
            ordered = isinstance(segment_keys, Sequence)
            self.segment_keys = list(segment_keys) if ordered else sorted(segment_keys)
        self.question_keys = list(question_keys) if question_keys is not None else None


def _journey_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in JOURNEY_SUFFIXES:
            yield path


def _load(
    path: Path, workspace: _Workspace
) -> tuple[JourneyDefinition | None, list[Problem], LocatedDocument | None]:
    """One journey file: the definition (``None`` on any problem), the problems, the document."""
    if not path.is_file():
        return None, [Problem(str(path), "expected a journey file, found none")], None
    document, problems = read_yaml_document(path, what="the journey", limits=workspace.limits)
    if document is None:
        return None, problems, None
    if document.data is None:
        problems.append(
            Problem(str(path), "expected a journey definition, found an empty file", 1, 1)
        )
        return None, problems, document
    report = _Report(path, document)
    report.problems += problems
    data = document.data
    if not isinstance(data, dict):
        report.add(f"expected a mapping of journey fields, found {type(data).__name__}")
        return None, report.problems, document

    definition: JourneyDefinition | None = None
    try:
        definition = JourneyDefinition.model_validate(data)
    except ValidationError as error:
        for detail in error.errors(include_url=False):
            _report_validation_error(report, detail)
    _check_references(report, data, workspace)
    _check_condition_names(report, data)
    _check_graph(report, data.get("steps"))
    if workspace.templates_dir is not None:
        _check_templates(report, data.get("steps"), workspace.templates_dir)
    if report.problems:
        problems = sorted(report.problems, key=lambda p: (p.line or 0, p.column or 0))
        return None, problems, document
    assert definition is not None
    return definition.with_source(str(path)), [], document


# --- the models, walked along the raw data --------------------------------------------------


def _variants(annotation: Any) -> list[tuple[str | None, Any]]:
    """The types a value of ``annotation`` may have, each with its union tag when it has one.

    ``Annotated`` is looked through and ``None`` dropped; a model's tag is its ``type`` literal.
    """
    tag: str | None = None
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        tag = next((m.tag for m in args[1:] if isinstance(m, Tag)), tag)
        annotation = args[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [
            variant
            for arg in typing.get_args(annotation)
            if arg is not type(None)
            for variant in _variants(arg)
        ]
    if tag is None and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        literal = annotation.model_fields.get("type")
        values = typing.get_args(literal.annotation) if literal is not None else ()
        tag = values[0] if len(values) == 1 and isinstance(values[0], str) else None
    return [(tag, annotation)]


def _choose(variants: list[tuple[str | None, Any]], value: Any) -> Any:
    """The one type a raw value has among ``variants`` (by its ``type`` field), or ``None``."""
    if len(variants) == 1:
        return variants[0][1]
    kind = value.get("type") if isinstance(value, dict) else None
    return next((annotation for tag, annotation in variants if tag == kind), None)


def _inner(annotation: Any, value: Any, element: Any) -> tuple[Any, Any]:
    """The type and raw value of ``element`` (a field, an index or a key) inside ``value``."""
    origin = typing.get_origin(annotation)
    if isinstance(element, str) and isinstance(annotation, type):
        if issubclass(annotation, BaseModel) and element in annotation.model_fields:
            inner = value.get(element) if isinstance(value, dict) else None
            return annotation.model_fields[element].annotation, inner
    elif isinstance(element, int) and origin is list:
        in_range = isinstance(value, list) and 0 <= element < len(value)
        return typing.get_args(annotation)[0], value[element] if in_range else None
    elif isinstance(element, str) and origin is dict:
        inner = value.get(element) if isinstance(value, dict) else None
        return typing.get_args(annotation)[1], inner
    return None, None


def _resolve(location: Sequence[Any], data: Any) -> tuple[PathKey, Any]:
    """A field location without its union tags, and the type found at its end.

    ``location`` is a pydantic error location (``("steps", 2, "branch", "cases", 0)``) or a
    path into the raw data; the type is ``None`` when the models do not tell it.
    """
    annotation: Any = JourneyDefinition
    value = data
    path: list[str | int] = []
    for element in location:
        variants = _variants(annotation) if annotation is not None else []
        tagged = [a for tag, a in variants if len(variants) > 1 and tag == element]
        if tagged:
            annotation = tagged[0]
            continue
        path.append(element)
        current = _choose(variants, value) if variants else None
        annotation, value = _inner(current, value, element)
    variants = _variants(annotation) if annotation is not None else []
    return tuple(path), _choose(variants, value) if variants else None


def _walk(
    annotation: Any, value: Any, path: PathKey = ()
) -> Iterator[tuple[PathKey, tuple[Any, ...], Any]]:
    """Every value in the raw data under ``path``, with the annotation metadata of its field."""
    current = _choose(_variants(annotation), value)
    origin = typing.get_origin(current)
    children: list[tuple[Any, Any, tuple[Any, ...]]] = []
    if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(value, dict):
        children = [
            (name, info.annotation, _metadata(info.annotation, info))
            for name, info in current.model_fields.items()
            if name in value
        ]
    elif origin is list and isinstance(value, list):
        item = typing.get_args(current)[0]
        children = [(index, item, _metadata(item)) for index in range(len(value))]
    elif origin is dict and isinstance(value, dict):
        item = typing.get_args(current)[1]
        children = [(key, item, _metadata(item)) for key in value if isinstance(key, str)]
    for element, inner, metadata in children:
        child = value[element]
        yield (*path, element), metadata, child
        yield from _walk(inner, child, (*path, element))


def _metadata(annotation: Any, info: FieldInfo | None = None) -> tuple[Any, ...]:
    """The ``Annotated`` metadata of a field (through ``X | None``), and its field info."""
    found: list[Any] = [info, *info.metadata] if info is not None else []
    pending = [annotation]
    while pending:
        current = pending.pop()
        if typing.get_origin(current) is typing.Annotated:
            args = typing.get_args(current)
            pending.append(args[0])
            found += args[1:]
        elif typing.get_origin(current) in (typing.Union, types.UnionType):
            pending += typing.get_args(current)
    return tuple(found)


def _is_condition(metadata: tuple[Any, ...]) -> bool:
    return any(mark is check for mark in metadata for check in _CONDITION_CHECKS)


def _is_segment_key(metadata: tuple[Any, ...]) -> bool:
    return any(
        isinstance(mark, FieldInfo) and mark.title in _SEGMENT_KEY_TITLES for mark in metadata
    )


# --- shape ----------------------------------------------------------------------------------


def _report_validation_error(report: _Report, detail: Any) -> None:
    path, found_type = _resolve(detail["loc"], report.data)
    location = list(path)
    kind = detail["type"]
    found = detail.get("input")
    if location[-2:-1] and location[-1] == "[key]":  # a mapping key, not its value, is wrong
        location.pop()
        report.add(f"key {location[-1]!r}: {detail['msg']}", location)
        return
    name = next((part for part in reversed(location) if isinstance(part, str)), "value")
    if kind == "missing":
        report.add(f"missing required field {name!r}", location, missing=name)
        return
    elif kind == "extra_forbidden":
        allowed = _allowed_fields(location[:-1], report.data)
        message = f"unknown field {name!r}"
        close = difflib.get_close_matches(name, allowed, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        elif allowed:
            message += f"; expected one of: {', '.join(allowed)}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        location.append("type")
        tags = detail.get("ctx", {}).get("expected_tags", "")
        given = found.get("type") if isinstance(found, dict) else None
        message = (
            f"unknown type {given!r}; expected one of: {tags}"
            if given is not None
            else f"missing required field 'type'; expected one of: {tags}"
        )
    elif isinstance(found_type, type) and issubclass(found_type, BaseModel):
        message = detail["msg"]  # a check of the whole step, trigger or goal
    else:
        message = f"{name}: {detail['msg']}"
        if _is_scalar(found) and repr(found) not in message:
            message = f"{message}, found {found!r}"
    report.add(message, location)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _allowed_fields(location: Sequence[Any], data: Any) -> list[str]:
    """The field names allowed in the mapping at ``location`` (for "did you mean")."""
    _, model = _resolve(location, data)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


# --- workspace references -------------------------------------------------------------------


def _check_references(report: _Report, data: dict[str, Any], workspace: _Workspace) -> None:
    """Segments named by triggers and conditions; question keys read by conditions."""
    segment_keys, question_keys = workspace.segment_keys, workspace.question_keys
    if segment_keys is None and question_keys is None:
        return
    for path, metadata, value in _walk(JourneyDefinition, data):
        if not isinstance(value, str) or report.has_problem_at(path):
            continue  # a value pydantic already refused is not checked further
        name = next((part for part in reversed(path) if isinstance(part, str)), "value")
        messages: list[str] = []
        if segment_keys is not None and _is_segment_key(metadata):
            messages += _unknown_segments([value], segment_keys)
        if _is_condition(metadata):
            if question_keys is not None:
                messages += check_condition(value, question_keys)
            if segment_keys is not None:
                messages += _unknown_segments(_segments_compared(value), segment_keys)
        for message in messages:
            report.add(f"{name}: {message}", path)


def _check_condition_names(report: _Report, data: dict[str, Any]) -> None:
    """Steps named by ``opened()`` / ``clicked()``, trigger fields and stages conditions read."""
    raw_steps = data.get("steps")
    steps: list[Any] = raw_steps if isinstance(raw_steps, list) else []
    send_steps = [
        step["id"]
        for step in steps
        if isinstance(step, dict) and step.get("type") == "send" and isinstance(step.get("id"), str)
    ]
    trigger = data.get("trigger")
    kind = trigger.get("type") if isinstance(trigger, dict) else None
    context = TRIGGER_CONTEXTS.get(kind) if isinstance(kind, str) else None
    for path, metadata, value in _walk(JourneyDefinition, data):
        if not isinstance(value, str) or not _is_condition(metadata):
            continue
        name = next((part for part in reversed(path) if isinstance(part, str)), "value")
        messages = check_condition_names(
            value,
            send_steps=send_steps if path[0] == "steps" else None,
            trigger_kind=kind if isinstance(kind, str) else None,
            trigger_fields=context.field_names() if context is not None else None,
        )
        for message in messages:
            report.add(f"{name}: {message}", path)


def _unknown_segments(keys: Iterable[str], known: list[str]) -> list[str]:
    messages = []
    for key in keys:
        if key in known or _CLUSTER_KEY.match(key):
            continue
        message = f"unknown segment {key!r}"
        close = difflib.get_close_matches(key, known, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        expected = (
            f"a cluster key such as 'seg-3' or a rule segment of segments.yaml: {', '.join(known)}"
            if known
            else "a cluster key such as 'seg-3'; segments.yaml declares no rule segment"
        )
        messages.append(f"{message} (expected {expected})")
    return messages


def _segments_compared(expression: str) -> list[str]:
    """Segment keys a condition tests (best effort: keys built at run time are not seen).

    It reads ``segment == 'x'``, ``segment != 'x'``, ``'x' in segments`` and
    ``segment in ['x', 'y']``.
    """
    try:
        tree = Parser(_PARSING, expression.strip(), state="variable").parse_expression()
    except TemplateSyntaxError:
        return []
    keys: list[str] = []
    compares = [tree] if isinstance(tree, nodes.Compare) else []
    for compare in [*compares, *tree.find_all(nodes.Compare)]:
        left = compare.expr
        for operand in compare.ops:
            keys += _keys_compared(left, operand.op, operand.expr)
            left = operand.expr
    return keys


def _keys_compared(left: nodes.Expr, operator: str, right: nodes.Expr) -> list[str]:
    """The segment keys one comparison of a condition tests."""
    if operator in ("eq", "ne"):
        for one, other in ((left, right), (right, left)):
            key = _text(other)
            if _is_name(one, "segment") and key is not None:
                return [key]
    elif operator in ("in", "notin"):
        key = _text(left)
        if _is_name(right, "segments") and key is not None:
            return [key]
        if _is_name(left, "segment") and isinstance(right, nodes.List | nodes.Tuple):
            return [key for key in map(_text, right.items) if key is not None]
    return []


def _is_name(node: nodes.Expr, name: str) -> bool:
    return isinstance(node, nodes.Name) and node.name == name


def _text(node: nodes.Expr) -> str | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return node.value
    return None


# --- graph ----------------------------------------------------------------------------------


def _check_graph(report: _Report, steps: Any) -> None:
    """Unknown next ids, duplicate ids, unreachable steps, no exit, cycles without a wait."""
    if not isinstance(steps, list) or not steps:
        return
    index_of: dict[str, int] = {}
    kind_of: dict[str, str] = {}
    for index, step in enumerate(steps):
        step_id = step.get("id") if isinstance(step, dict) else None
        if not isinstance(step_id, str):
            continue
        if step_id in index_of:
            report.add(
                f"duplicate step id {step_id!r} (first used by step {index_of[step_id] + 1}); "
                "expected unique step ids",
                ["steps", index, "id"],
            )
            continue
        index_of[step_id] = index
        kind_of[step_id] = step.get("type") if isinstance(step.get("type"), str) else ""

    links: dict[str, list[str]] = {step_id: [] for step_id in index_of}
    link_fields: dict[tuple[str, str], PathKey] = {}
    broken = False
    for step_id, index in index_of.items():
        for field_path, target in _step_links(steps[index]):
            if target in index_of:
                links[step_id].append(target)
                link_fields.setdefault((step_id, target), field_path)
                continue
            broken = True
            close = difflib.get_close_matches(target, list(index_of), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            field = ".".join(str(part) for part in field_path)
            report.add(
                f"{field} points to unknown step {target!r}; expected one of: "
                f"{', '.join(index_of)}{hint}",
                ["steps", index, *field_path],
            )

    entry = steps[0].get("id") if isinstance(steps[0], dict) else None
    if not isinstance(entry, str):
        return
    reachable = _reachable(entry, links)
    for step_id, index in index_of.items():
        if step_id not in reachable:
            report.add(
                f"unreachable: no step leads to {step_id!r} from the entry step {entry!r}",
                ["steps", index, "id"],
            )
    exits = {step_id for step_id in reachable if kind_of.get(step_id) == "exit"}
    if not broken and not exits:
        report.add(
            f"no exit step can be reached from the entry step {entry!r}; expected a path to an "
            "exit step",
            ["steps", 0, "id"],
        )
    elif not broken:
        reverse: dict[str, list[str]] = {step_id: [] for step_id in links}
        for source, targets in links.items():
            for target in targets:
                reverse[target].append(source)
        can_exit = _reachable_from_many(exits, reverse)
        for step_id in reachable - can_exit:
            report.add(
                f"no exit step can be reached from {step_id!r}; members would be stuck",
                ["steps", index_of[step_id], "id"],
            )
    for cycle in _cycles_without_wait(reachable, links, kind_of):
        first = min(cycle, key=index_of.__getitem__)
        path = " -> ".join([*sorted(cycle, key=index_of.__getitem__), first])
        # point at the link that loops back to the earliest step of the cycle
        last = max((source for source in cycle if first in links[source]), key=index_of.__getitem__)
        report.add(
            f"cycle without a wait step ({path}); expected a wait step in every loop",
            ["steps", index_of[last], *link_fields[(last, first)]],
        )


def _step_links(step: dict[str, Any]) -> Iterator[tuple[PathKey, str]]:
    """The (field path, target id) links of a raw step: next, otherwise, cases and variants."""
    for field in ("next", "otherwise"):
        target = step.get(field)
        if isinstance(target, str):
            yield (field,), target
    for field in ("cases", "variants"):
        items = step.get(field)
        if isinstance(items, list):
            for index, item in enumerate(items):
                target = item.get("next") if isinstance(item, dict) else None
                if isinstance(target, str):
                    yield (field, index, "next"), target


def _reachable(start: str, links: dict[str, list[str]]) -> set[str]:
    return _reachable_from_many([start], links)


def _reachable_from_many(starts: Iterable[str], links: dict[str, list[str]]) -> set[str]:
    seen = set(starts)
    stack = list(seen)
    while stack:
        for target in links.get(stack.pop(), []):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _cycles_without_wait(
    nodes: set[str], links: dict[str, list[str]], kind_of: dict[str, str]
) -> list[set[str]]:
    """Strongly connected components (Tarjan) of the non-wait steps that form a loop."""
    graph = {
        node: [t for t in links[node] if t in nodes and kind_of.get(t) != "wait"]
        for node in sorted(nodes)
        if kind_of.get(node) != "wait"
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


# --- templates ------------------------------------------------------------------------------


def _check_templates(report: _Report, steps: Any, templates_dir: Path) -> None:
    """Every send step's template exists in both variants, HTML and plain text."""
    if not isinstance(steps, list):
        return
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("type") != "send":
            continue
        template = step.get("template")
        if not isinstance(template, str) or not template or ".." in template:
            continue
        missing = [
            str(expected)
            for expected in (templates_dir / f"{template}{suffix}" for suffix in TEMPLATE_SUFFIXES)
            if not expected.is_file()
        ]
        if missing:
            report.add(
                f"template {template!r} not found: expected {' and '.join(missing)}",
                ["steps", index, "template"],
            )
