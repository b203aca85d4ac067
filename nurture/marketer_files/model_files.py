"""Load a marketer's YAML file (or a Markdown file's front matter) into a pydantic model.

The one skeleton behind every loader: read the file within the bounds of
:mod:`nurture.marketer_files.located_yaml`, parse it with positions, check that it is a mapping,
then validate it as the model; every problem (unreadable file, YAML, limit, duplicate key, field)
comes back with its file, line, column and field, none raised, so that a caller can collect the
problems of many files before raising one error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from nurture.errors import Problem
from nurture.marketer_files.located_yaml import (
    DEFAULT_YAML_LIMITS,
    LocatedDocument,
    YamlLimits,
    parse_located_yaml,
    problems_from_validation_error,
    read_marketer_text,
)

__all__ = [
    "FrontMatter",
    "ModelFile",
    "describe_found",
    "load_model_file",
    "read_front_matter",
    "read_yaml_document",
    "validate_document",
]

M = TypeVar("M", bound=BaseModel)

_FENCE = "---"


@dataclass
class ModelFile(Generic[M]):
    """What loading one file gave.

    Attributes:
        value: The model, or ``None`` when any problem was found.
        document: The located document, when the YAML could be parsed (to place further
            problems a caller finds).
        problems: Every problem found, each with its file and, when known, line, column and
            field.
    """

    value: M | None
    document: LocatedDocument | None = None
    problems: list[Problem] = field(default_factory=list)


def describe_found(data: Any) -> str:
    """How a problem names a document that is not the mapping expected (``an empty file``)."""
    return "an empty file" if data is None else type(data).__name__


def read_yaml_document(
    path: Path, *, what: str = "the file", limits: YamlLimits = DEFAULT_YAML_LIMITS
) -> tuple[LocatedDocument | None, list[Problem]]:
    """Read and parse one YAML file within ``limits``.

    Args:
        path: The file.
        what: What the file is, for the message when it cannot be opened.
        limits: The bounds on size, nesting and aliases.

    Returns:
        The located document (``None`` when it cannot be read or parsed) and the problems.
    """
    text, problems = read_marketer_text(path, limits=limits, what=what)
    if text is None:
        return None, problems
    return parse_located_yaml(text, path, limits=limits)


def validate_document(
    document: LocatedDocument,
    model: type[M],
    source: Path | str,
    *,
    data: Any = None,
    context: Mapping[str, Any] | None = None,
) -> tuple[M | None, list[Problem]]:
    """Validate a located document as ``model``, each error placed at its line and field.

    Args:
        document: The located document.
        model: The pydantic model.
        source: The file, named in problems.
        data: What to validate instead of ``document.data`` (the same data with derived fields
            added, say); positions still come from ``document``.
        context: The pydantic validation context (workspace languages, question keys...).

    Returns:
        The model (``None`` on any error) and the problems.
    """
    try:
        value = model.model_validate(
            document.data if data is None else data, context=dict(context or {})
        )
    except ValidationError as exc:
        return None, problems_from_validation_error(exc, model, document, source)
    return value, []


def load_model_file(
    path: Path | str,
    model: type[M],
    *,
    expected: str,
    what: str = "the file",
    optional: bool = False,
    context: Mapping[str, Any] | None = None,
    limits: YamlLimits = DEFAULT_YAML_LIMITS,
) -> ModelFile[M]:
    """Load a YAML file whose document is a mapping of ``model``'s fields.

    Args:
        path: The file.
        model: The pydantic model of the whole document.
        expected: What the document should be, for a document that is not a mapping (``a
            mapping with 'version' and 'questions'``).
        what: What the file is, for the message when it cannot be opened.
        optional: Whether an absent or empty file means the model's defaults (``sending.yaml``,
            ``segments.yaml``) rather than a problem.
        context: The pydantic validation context.
        limits: The bounds on size, nesting and aliases.

    Returns:
        The model when the file has no problem, with the document and every problem.
    """
    path = Path(path)
    if optional and not path.exists():
        return ModelFile(model.model_validate({}, context=dict(context or {})))
    document, problems = read_yaml_document(path, what=what, limits=limits)
    if document is None:
        return ModelFile(None, None, problems)
    if document.data is None and optional:
        document.data = {}
    if not isinstance(document.data, dict):
        root = document.positions.get(())
        problems.append(
            Problem(
                path,
                f"expected {expected}, found {describe_found(document.data)}",
                line=root.line if root else 1,
                column=root.column if root else 1,
            )
        )
        return ModelFile(None, document, problems)
    value, invalid = validate_document(document, model, path, context=context)
    problems += invalid
    return ModelFile(value if not problems else None, document, problems)


@dataclass
class FrontMatter:
    """A Markdown file split into its YAML front matter and its body.

    Attributes:
        document: The front matter, parsed, with positions in the whole file.
        body: The text after the closing ``---`` line.
        body_line: The line the body starts on.
    """

    document: LocatedDocument
    body: str
    body_line: int


def read_front_matter(
    path: Path, *, limits: YamlLimits = DEFAULT_YAML_LIMITS
) -> tuple[FrontMatter | None, list[Problem]]:
    """Read a Markdown file with YAML front matter (between two ``---`` lines).

    Args:
        path: The file.
        limits: The bounds on size (of the whole file), nesting and aliases.

    Returns:
        The front matter and body (``None`` when the file cannot be read, has no closed front
        matter or its YAML cannot be parsed) and every problem found, duplicate keys included.
    """
    text, problems = read_marketer_text(path, limits=limits)
    if text is None:
        return None, problems
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != _FENCE:
        return None, [
            Problem(
                path,
                "missing front matter: the file must start with a '---' line, then YAML fields "
                "(title, url, kind, language, summary...), then a closing '---' line",
                line=1,
                column=1,
            )
        ]
    for index in range(1, len(lines)):
        if lines[index].rstrip() in (_FENCE, "..."):
            front = "".join(lines[1:index])
            body = "".join(lines[index + 1 :])
            document, problems = parse_located_yaml(front, path, line_offset=1, limits=limits)
            if document is None:
                return None, problems
            return FrontMatter(document, body, index + 2), problems
    return None, [
        Problem(
            path,
            "front matter is never closed: add a '---' line after the YAML fields",
            line=1,
            column=1,
        )
    ]
