"""Inbound webhooks of community platforms: ``integrations/*.yaml`` maps a payload to records.

Each file describes one platform (its name is the file's stem, the route is
``POST /webhooks/integrations/<name>``): how its requests are signed (an HMAC of the body, in
a header, with a secret read from an environment variable the file names: never the secret
itself), and rules, each turning a payload it matches into a member record and/or an activity
event, the records of the import files. A rule's fields are values:

- ``$.user.email``: a path into the JSON payload (``.name`` and ``[index]`` steps); the value
  there, as it is (text, number, object). A path that leads nowhere leaves the field out.
- ``discourse-{$.user.id}``: text with paths in braces, each replaced by the value there (the
  whole text is left out when one leads nowhere).
- anything else (``post``, ``42``, ``true``): itself.
- a mapping (for ``properties`` or an attribute): each of its values read as above.

A rule applies when each of its ``when`` conditions holds: a header or a path equals a value
(or, without ``equals``, is present). See ``docs/integrations.md`` and
``content/integrations/discourse.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nurture.errors import Problem, WorkspaceValidationError
from nurture.ingest import ACTIVITY_COLUMNS
from nurture.marketer_files.located_yaml import DEFAULT_YAML_LIMITS, YamlLimits
from nurture.marketer_files.model_files import load_model_file

__all__ = [
    "INTEGRATIONS_DIR",
    "Condition",
    "Integration",
    "IntegrationRule",
    "MappedPayload",
    "Signature",
    "load_integrations",
    "map_payload",
    "read_integrations",
    "resolve_path",
]

INTEGRATIONS_DIR = "integrations"
_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]")
_PATH = re.compile(r"^\$(?:\.[A-Za-z_][\w-]*|\[\d+\])*$")
_PLACEHOLDER = re.compile(r"\{(\$[^{}]*)\}")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
_MISSING = object()


class Signature(BaseModel):
    """How the platform signs a request: an HMAC-SHA256 of the raw body, in a header."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: str = Field(min_length=1, max_length=100)
    secret_env: str = Field(description="the environment variable holding the shared secret")
    prefix: str = Field(default="", max_length=50, description="text before the digest")
    encoding: Literal["hex", "base64"] = "hex"

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(
                f"expected an environment variable name (A-Z, 0-9, _), found {value!r}"
            )
        return value


class Condition(BaseModel):
    """A header or a path of the payload that must equal a value (or, without one, be there)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: str | None = None
    path: str | None = None
    equals: str | int | float | bool | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Condition:
        if (self.header is None) == (self.path is None):
            raise ValueError("give exactly one of 'header' and 'path'")
        if self.path is not None:
            _check_path(self.path)
        return self


class IntegrationRule(BaseModel):
    """Payloads matching ``when`` become a member record and/or an activity event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    when: list[Condition] = Field(default_factory=list)
    member: dict[str, Any] | None = None
    event: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _records(self) -> IntegrationRule:
        if self.member is None and self.event is None:
            raise ValueError("a rule maps to a 'member', an 'event', or both")
        if self.member is not None and "email" not in self.member:
            raise ValueError("'member' must map 'email' (as a members import requires)")
        if self.event is not None:
            unknown = sorted(set(self.event) - set(ACTIVITY_COLUMNS))
            if unknown:
                raise ValueError(
                    f"'event' has unknown fields {', '.join(unknown)} "
                    f"(expected {', '.join(ACTIVITY_COLUMNS)})"
                )
            missing = [name for name in ("member", "type", "occurred_at") if name not in self.event]
            if missing:
                raise ValueError(f"'event' must map {', '.join(missing)}")
        for values in (self.member or {}, self.event or {}):
            _check_values(values)
        return self


class Integration(BaseModel):
    """One platform's webhook: its signature and its rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signature: Signature
    rules: list[IntegrationRule] = Field(min_length=1)
    key: str = Field(default="", description="the file's stem, set when loaded")


def _check_path(path: str) -> None:
    if not _PATH.match(path):
        raise ValueError(f"path {path!r}: expected $ then .name or [index] steps ($.user.email)")


def _check_values(values: Mapping[str, Any]) -> None:
    for value in values.values():
        if isinstance(value, dict):
            _check_values(value)
        elif isinstance(value, str):
            if value.startswith("$"):
                _check_path(value)
            for path in _PLACEHOLDER.findall(value):
                _check_path(path)
        elif value is not None and not isinstance(value, int | float | bool):
            raise ValueError(f"expected a path, a text, a number or a mapping, found {value!r}")


def resolve_path(payload: Any, path: str) -> Any:
    """The value at ``path`` ($.a.b[0]) in ``payload``; ``None`` when it leads nowhere."""
    value = _resolve(payload, path)
    return None if value is _MISSING else value


def _resolve(payload: Any, path: str) -> Any:
    current = payload
    for name, index in _STEP.findall(path[1:]):
        if name:
            if not isinstance(current, dict) or name not in current:
                return _MISSING
            current = current[name]
        else:
            if not isinstance(current, list) or int(index) >= len(current):
                return _MISSING
            current = current[int(index)]
    return current


def _value(spec: Any, payload: Any) -> Any:
    """What a rule's value gives for ``payload``; ``_MISSING`` leaves the field out."""
    if isinstance(spec, dict):
        mapped = {key: _value(item, payload) for key, item in spec.items()}
        return {key: item for key, item in mapped.items() if item is not _MISSING}
    if not isinstance(spec, str):
        return spec
    if spec.startswith("$"):
        found = _resolve(payload, spec)
        return _MISSING if found is None else found
    parts: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(spec):
        found = _resolve(payload, match.group(1))
        if found is _MISSING or found is None or isinstance(found, dict | list):
            return _MISSING
        parts += [spec[position : match.start()], str(found)]
        position = match.end()
    return "".join(parts) + spec[position:]


@dataclass
class MappedPayload:
    """The records a payload maps to.

    Attributes:
        rules: The names of the rules that applied, in file order.
        members: The member records (one per rule mapping a member).
        events: The activity event records.
        member_rules: The rule each member record came from.
        event_rules: The rule each event record came from.
    """

    rules: list[str] = field(default_factory=list)
    members: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    member_rules: list[str] = field(default_factory=list)
    event_rules: list[str] = field(default_factory=list)


def map_payload(
    integration: Integration, payload: Any, headers: Mapping[str, str]
) -> MappedPayload:
    """The member and event records ``payload`` maps to, by every rule it matches.

    Args:
        integration: The platform's mapping.
        payload: The parsed JSON body.
        headers: The request's headers (names compared case-insensitively).

    Returns:
        The records; none when no rule matches (a platform's other events are ignored).
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    mapped = MappedPayload()
    for rule in integration.rules:
        if not all(_holds(condition, payload, lowered) for condition in rule.when):
            continue
        mapped.rules.append(rule.name)
        if rule.member is not None:
            mapped.members.append(_value(rule.member, payload))
            mapped.member_rules.append(rule.name)
        if rule.event is not None:
            mapped.events.append(_value(rule.event, payload))
            mapped.event_rules.append(rule.name)
    return mapped


def _holds(condition: Condition, payload: Any, headers: Mapping[str, str]) -> bool:
    if condition.header is not None:
        found: Any = headers.get(condition.header.lower(), _MISSING)
    else:
        assert condition.path is not None
        found = _resolve(payload, condition.path)
    if found is _MISSING:
        return False
    if condition.equals is None:
        return True
    if isinstance(found, str) and not isinstance(condition.equals, str):
        return found in (str(condition.equals), str(condition.equals).lower())
    return bool(found == condition.equals)


def read_integrations(
    folder: Path | str, *, limits: YamlLimits = DEFAULT_YAML_LIMITS
) -> tuple[list[Integration], list[Problem]]:
    """Read every ``*.yaml`` of a workspace's ``integrations/`` folder (absent: none).

    Returns:
        The integrations that load, by file name order, and every problem of every file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [], []
    integrations: list[Integration] = []
    problems: list[Problem] = []
    for path in sorted(folder.glob("*.yaml")):
        if not _KEY.match(path.stem):
            problems.append(
                Problem(path, "the file's name is the route: lower-case letters, digits, - or _")
            )
            continue
        loaded = load_model_file(
            path,
            Integration,
            expected="a mapping with 'signature' and 'rules'",
            what="the integration file",
            limits=limits,
        )
        problems += loaded.problems
        if loaded.value is not None:
            integrations.append(loaded.value.model_copy(update={"key": path.stem}))
    return integrations, problems


def load_integrations(root: Path | str) -> dict[str, Integration]:
    """The integrations of a workspace, by name.

    Raises:
        WorkspaceValidationError: Every problem of every integration file.
    """
    integrations, problems = read_integrations(Path(root) / INTEGRATIONS_DIR)
    if problems:
        raise WorkspaceValidationError(problems)
    return {integration.key: integration for integration in integrations}
