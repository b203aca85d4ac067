"""Load journey YAML files: check the shape, then the graph, and report every problem at once.

Each problem names the file, the line and column, the field (``steps.2.next``) and, for a step,
its id. The YAML is composed into nodes first so every value keeps its position.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from nurture.errors import JourneyValidationError, Problem
from nurture.journeys.models import STEP_KINDS, TRIGGER_KINDS, JourneyDefinition

__all__ = ["JOURNEY_SUFFIXES", "load_journey", "load_journeys"]

JOURNEY_SUFFIXES = (".yaml", ".yml")
"""File suffixes read as journeys by ``load_journeys``."""

PathKey = tuple[str | int, ...]


class _Positions:
    """Maps a field path (``("steps", 2, "next")``) to the line and column of its YAML node."""

    def __init__(self, root: yaml.Node) -> None:
        self.root = root

    def locate(self, path: Sequence[Any]) -> tuple[int, int, PathKey]:
        """The 1-based position of the deepest node along ``path``, and the part of path found.

        Path elements that name no node (union tags such as ``send``) are skipped; a missing last
        key points at the mapping that should hold it.
        """
        node = self.root
        found: list[str | int] = []
        mark = node.start_mark
        for element in path:
            child = self._child(node, element)
            if child is None:
                continue
            key_node, value_node = child
            found.append(element)
            node = value_node
            mark = (key_node or value_node).start_mark
        return mark.line + 1, mark.column + 1, tuple(found)

    @staticmethod
    def _child(node: yaml.Node, element: Any) -> tuple[yaml.Node | None, yaml.Node] | None:
        if isinstance(node, yaml.MappingNode) and isinstance(element, str):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == element:
                    return key_node, value_node
        is_item = isinstance(node, yaml.SequenceNode) and isinstance(element, int)
        if is_item and 0 <= element < len(node.value):
            return None, node.value[element]
        return None


class _Report:
    """Problems found in one file, with positions looked up from the YAML nodes."""

    def __init__(self, path: Path, positions: _Positions | None, data: Any) -> None:
        self.path = path
        self.positions = positions
        self.data = data
        self.problems: list[Problem] = []

    def add(self, message: str, location: Sequence[Any] = (), missing: str | None = None) -> None:
        """Record a problem at ``location``; ``missing`` names a required field not given."""
        line = column = None
        found: PathKey = ()
        if self.positions is not None:
            line, column, found = self.positions.locate(location)
        step_id = self._step_id(found)
        if step_id is not None:
            message = f"step {step_id!r}: {message}"
        field = ".".join(str(part) for part in (*found, *([missing] if missing else []))) or None
        self.problems.append(Problem(str(self.path), message, line, column, field))

    def _step_id(self, found: PathKey) -> str | None:
        if len(found) < 2 or found[0] != "steps" or not isinstance(found[1], int):
            return None
        steps = self.data.get("steps") if isinstance(self.data, dict) else None
        step = steps[found[1]] if isinstance(steps, list) else None
        step_id = step.get("id") if isinstance(step, dict) else None
        return step_id if isinstance(step_id, str) else None


def load_journey(path: Path | str, templates_dir: Path | str | None = None) -> JourneyDefinition:
    """Load one journey YAML file and check its shape and its graph.

    Args:
        path: The journey file.
        templates_dir: The email templates folder; when given, every send step's
            ``<template>.html.j2`` must exist there.

    Returns:
        The definition, with ``source_path`` set and its ``definition_hash``.

    Raises:
        JourneyValidationError: Every problem found, each with file, line, column and field.
    """
    definition, problems = _load(Path(path), Path(templates_dir) if templates_dir else None)
    if problems or definition is None:
        raise JourneyValidationError(problems)
    return definition


def load_journeys(
    directory: Path | str, templates_dir: Path | str | None = None
) -> list[JourneyDefinition]:
    """Load every journey file (``*.yaml``, ``*.yml``) of a folder, in file name order.

    Args:
        directory: The journeys folder.
        templates_dir: The email templates folder, to check that every template exists.

    Returns:
        The definitions, in file name order.

    Raises:
        JourneyValidationError: Every problem of every file, including two files with one id.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise JourneyValidationError(
            [Problem(str(directory), "expected a folder of journey YAML files, found none")]
        )
    templates = Path(templates_dir) if templates_dir else None
    definitions: list[JourneyDefinition] = []
    problems: list[Problem] = []
    first_file_of: dict[str, str] = {}
    for path in _journey_files(directory):
        definition, file_problems = _load(path, templates)
        problems += file_problems
        if definition is None:
            continue
        if definition.id in first_file_of:
            line, column = _id_position(path)
            problems.append(
                Problem(
                    str(path),
                    f"journey id {definition.id!r} is already used by "
                    f"{first_file_of[definition.id]}; expected a unique id",
                    line,
                    column,
                    "id",
                )
            )
            continue
        first_file_of[definition.id] = str(path)
        definitions.append(definition)
    if problems:
        raise JourneyValidationError(problems)
    return definitions


def _journey_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in JOURNEY_SUFFIXES:
            yield path


def _id_position(path: Path) -> tuple[int | None, int | None]:
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None, None
    if root is None:
        return None, None
    line, column, _ = _Positions(root).locate(["id"])
    return line, column


def _load(path: Path, templates_dir: Path | None) -> tuple[JourneyDefinition | None, list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(str(path), "expected a journey file, found none")]
    except (OSError, UnicodeDecodeError) as error:
        return None, [Problem(str(path), f"cannot read the file as UTF-8 text: {error}")]
    try:
        root, data = _parse_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        reason = getattr(error, "problem", None) or str(error)
        return None, [
            Problem(
                str(path),
                f"invalid YAML: {reason}",
                mark.line + 1 if mark else None,
                mark.column + 1 if mark else None,
            )
        ]
    if root is None:
        return None, [Problem(str(path), "expected a journey definition, found an empty file")]
    report = _Report(path, _Positions(root), data)
    _check_duplicate_keys(root, report, ())
    if not isinstance(data, dict):
        report.add(f"expected a mapping of journey fields, found {type(data).__name__}")
        return None, report.problems

    definition: JourneyDefinition | None = None
    try:
        definition = JourneyDefinition.model_validate(data)
    except ValidationError as error:
        for detail in error.errors(include_url=False):
            _report_validation_error(report, detail)
    _check_graph(report, data.get("steps"))
    if templates_dir is not None:
        _check_templates(report, data.get("steps"), templates_dir)
    if report.problems:
        return None, report.problems
    assert definition is not None
    return definition.with_source(str(path)), []


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The composed node tree (with positions) and the Python data built from it."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return root, data


def _check_duplicate_keys(node: yaml.Node, report: _Report, path: PathKey) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen:
                mark = key_node.start_mark
                field = ".".join(str(part) for part in (*path, key))
                report.problems.append(
                    Problem(
                        str(report.path),
                        f"field {key!r} is given twice; expected each field once",
                        mark.line + 1,
                        mark.column + 1,
                        field,
                    )
                )
            if key is not None:
                seen.add(key)
                _check_duplicate_keys(value_node, report, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicate_keys(item, report, (*path, index))


# --- shape ----------------------------------------------------------------------------------


def _report_validation_error(report: _Report, detail: Any) -> None:
    location = list(detail["loc"])
    kind = detail["type"]
    name = next((part for part in reversed(location) if isinstance(part, str)), "value")
    found = detail.get("input")
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
    else:
        message = detail["msg"]
        if _is_scalar(found) and not str(message).endswith(repr(found)):
            message = f"{name}: {message}, found {found!r}"
        else:
            message = f"{name}: {message}"
    report.add(message, location)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _allowed_fields(location: Sequence[Any], data: Any) -> list[str]:
    """The field names allowed in the mapping at ``location`` (for "did you mean")."""
    model: type[BaseModel] | None = JourneyDefinition
    if location and location[0] == "trigger":
        trigger = data.get("trigger") if isinstance(data, dict) else None
        model = _trigger_model(trigger)
    elif location and location[0] == "steps":
        step_kind = location[2] if len(location) > 2 else None
        model = STEP_KINDS.get(step_kind) if isinstance(step_kind, str) else None
        if model is not None and len(location) > 3 and location[3] == "content":
            model = _field_model(model, "content")
    if model is None:
        return []
    return list(model.model_fields)


def _trigger_model(trigger: Any) -> type[BaseModel] | None:
    kind = trigger.get("type") if isinstance(trigger, dict) else None
    return TRIGGER_KINDS.get(kind) if isinstance(kind, str) else None


def _field_model(model: type[BaseModel], field: str) -> type[BaseModel] | None:
    annotation = model.model_fields[field].annotation
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_model else None


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
    broken = False
    for step_id, index in index_of.items():
        for field_path, target in _step_links(steps[index]):
            if target in index_of:
                links[step_id].append(target)
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
        report.add(
            f"cycle without a wait step ({path}); expected a wait step in every loop",
            ["steps", index_of[first], "next"],
        )


def _step_links(step: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """The (field path, target id) links of one raw step: next, cases[i].next, otherwise."""
    for field in ("next", "otherwise"):
        target = step.get(field)
        if isinstance(target, str):
            yield (field,), target
    cases = step.get("cases")
    if isinstance(cases, list):
        for index, case in enumerate(cases):
            target = case.get("next") if isinstance(case, dict) else None
            if isinstance(target, str):
                yield ("cases", index, "next"), target


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
    if not isinstance(steps, list):
        return
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("type") != "send":
            continue
        template = step.get("template")
        if not isinstance(template, str) or not template or ".." in template:
            continue
        expected = templates_dir / f"{template}.html.j2"
        if not expected.is_file():
            report.add(
                f"template {template!r} not found: expected {expected}",
                ["steps", index, "template"],
            )
