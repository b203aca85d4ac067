"""``workspace.yaml``: what a workspace declares about itself, its languages first.

The file is optional; without it a workspace writes in :data:`~nurture.languages.DEFAULT_LANGUAGES`
(English, then French), as before languages were declared. It reads::

    languages: [en, fr, de]     # the first is the default language
    strings:                     # UI strings of layouts and partials, per language
      de:
        recommended_for_you: Für Sie ausgewählt
        ...

Adding a language is adding its strings, not code: declare it, give its UI strings (the
``t(...)`` strings of layouts and partials; English and French are built in, see
``nurture.delivery.rendering.STRINGS``) and its labels in ``questionnaire.yaml`` and
``segments.yaml``, and branch on it in the templates' body copy. Then members import with that
language, content items may be written in it and every template is checked in it. A UI string
the language lacks falls back to the default language's, then to English
(``nurture journeys validate`` lists them); texts nurture writes itself (recommendation
reasons, the unsubscribe and preference pages) exist in English and French and fall back to
English.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nurture.delivery.rendering import STRINGS
from nurture.errors import Problem, WorkspaceValidationError
from nurture.languages import DEFAULT_LANGUAGES
from nurture.marketer_files.localized import LanguageCode
from nurture.marketer_files.located_yaml import DEFAULT_YAML_LIMITS, FieldIssues, YamlLimits
from nurture.marketer_files.model_files import load_model_file

__all__ = [
    "WORKSPACE_FILE",
    "WorkspaceConfig",
    "load_workspace_config",
    "read_workspace_config",
]

WORKSPACE_FILE = "workspace.yaml"
"""The file, at the root of the workspace."""


class WorkspaceConfig(BaseModel):
    """What ``workspace.yaml`` declares (every field optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    languages: tuple[LanguageCode, ...] = Field(
        default=DEFAULT_LANGUAGES,
        min_length=1,
        description=(
            "The languages members are written to, the default first: a member whose language "
            "is not one of them gets the default, and a text missing in a language falls back "
            "to it."
        ),
    )
    strings: dict[LanguageCode, dict[str, Annotated[str, Field(min_length=1)]]] = Field(
        default_factory=dict,
        description=(
            "UI strings of the layouts and partials (t('key')) per language, added to or "
            "replacing the built-in English and French ones; a string a language lacks "
            "falls back to the default language's, then to English."
        ),
    )

    @model_validator(mode="after")
    def _check_languages(self) -> WorkspaceConfig:
        issues: list[tuple[tuple[str | int, ...], str]] = []
        seen: set[str] = set()
        for index, code in enumerate(self.languages):
            if code in seen:
                issues.append((("languages", index), f"language {code!r} is declared twice"))
            seen.add(code)
        for code in self.strings:
            if code not in seen:
                issues.append(
                    (
                        ("strings", code),
                        f"language {code!r} is not declared; expected one of: "
                        f"{', '.join(self.languages)}",
                    )
                )
        if issues:
            raise FieldIssues(issues)
        return self

    @property
    def default_language(self) -> str:
        """The language of members whose own language is not declared."""
        return self.languages[0]

    def missing_ui_strings(self) -> dict[str, list[str]]:
        """The built-in UI strings each declared language lacks, by language.

        A string a language lacks falls back to the default language's, then to English;
        languages lacking none are left out.
        """
        given = self.ui_strings()
        missing = {code: [key for key in STRINGS["en"] if key not in given[code]] for code in given}
        return {code: keys for code, keys in missing.items() if keys}

    def ui_strings(self) -> dict[str, dict[str, str]]:
        """The UI strings per declared language: the built-in ones with the workspace's on top."""
        return {
            code: {**STRINGS.get(code, {}), **self.strings.get(code, {})} for code in self.languages
        }


def read_workspace_config(
    root: Path | str, *, limits: YamlLimits = DEFAULT_YAML_LIMITS
) -> tuple[WorkspaceConfig, list[Problem]]:
    """Read ``workspace.yaml`` of a workspace; an absent or empty file gives the defaults.

    Args:
        root: The workspace folder.
        limits: The bounds on size, nesting and aliases.

    Returns:
        The declaration (the defaults when the file has problems, so that the other files can
        still be checked) and every problem of the file.
    """
    loaded = load_model_file(
        Path(root) / WORKSPACE_FILE,
        WorkspaceConfig,
        expected="a mapping with 'languages' (and 'strings')",
        what="the workspace declaration",
        optional=True,
        limits=limits,
    )
    return loaded.value or WorkspaceConfig(), loaded.problems


def load_workspace_config(root: Path | str) -> WorkspaceConfig:
    """Read ``workspace.yaml`` of a workspace; an absent or empty file gives the defaults.

    Args:
        root: The workspace folder.

    Returns:
        The declaration.

    Raises:
        WorkspaceValidationError: The file is invalid; every problem with its line and field.
    """
    config, problems = read_workspace_config(root)
    if problems:
        raise WorkspaceValidationError(problems)
    return config
