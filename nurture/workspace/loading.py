"""The whole workspace, loaded in one order and cross-checked once: :func:`load_workspace`.

A workspace is a folder of files marketers write::

    workspace.yaml        languages (optional; default en, fr) and their UI strings
    brand.yaml            community name, logo, colours, reply-to, postal address, reason
    questionnaire.yaml    the questions members answer
    library/*.md          the content items (front matter + Markdown)
    segments.yaml         rule segments (optional)
    sending.yaml          the message budget and quiet hours (optional)
    journeys/*.yaml       the journeys
    templates/*.j2        the email templates
    integrations/*.yaml   inbound webhooks of community platforms (optional)

They are loaded in that order, each checked against what came before it: labels and content
items against the declared languages, rules against the question keys, journeys against the
question keys, the rule segments and the templates, and every template rendered in every
language with the journeys' subject lines. Every problem of every file is collected before one
:class:`~nurture.errors.WorkspaceValidationError` lists them all; a file with problems is left
out of the checks of the files after it (its keys are not known), so one mistake is reported
once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nurture.delivery.limits import DEFAULT_RENDER_LIMITS, RenderLimits
from nurture.errors import Problem, WorkspaceValidationError
from nurture.marketer_files.located_yaml import DEFAULT_YAML_LIMITS, YamlLimits
from nurture.workspace.brand import BRAND_FILE, Brand, email_branding, read_brand
from nurture.workspace.config import WORKSPACE_FILE, WorkspaceConfig, read_workspace_config
from nurture.workspace.integrations import INTEGRATIONS_DIR, Integration, read_integrations
from nurture.workspace.library import ContentItemSpec, read_content_library
from nurture.workspace.questionnaire import Questionnaire, read_questionnaire
from nurture.workspace.templates import (
    journey_subjects,
    transactional_templates,
    validate_templates,
)

if TYPE_CHECKING:
    from nurture.journeys.models import JourneyDefinition
    from nurture.journeys.policy import SendingRules
    from nurture.segmentation.rules import SegmentRule

__all__ = [
    "Workspace",
    "WorkspacePaths",
    "check_journey_files",
    "load_workspace",
]

DEFAULT_PUBLIC_BASE_URL = "https://community.example.org"


@dataclass(frozen=True)
class WorkspacePaths:
    """Where each marketer file of a workspace is.

    Attributes:
        root: The workspace folder.
    """

    root: Path

    @property
    def config(self) -> Path:
        """``workspace.yaml``: the languages and their UI strings (optional)."""
        return self.root / WORKSPACE_FILE

    @property
    def brand(self) -> Path:
        """``brand.yaml``: the community's name, look and footer (optional)."""
        return self.root / BRAND_FILE

    @property
    def questionnaire(self) -> Path:
        """``questionnaire.yaml``."""
        return self.root / "questionnaire.yaml"

    @property
    def library(self) -> Path:
        """``library/``: the content items."""
        return self.root / "library"

    @property
    def segments(self) -> Path:
        """``segments.yaml``: the rule segments (optional)."""
        return self.root / "segments.yaml"

    @property
    def sending(self) -> Path:
        """``sending.yaml``: the budget and quiet hours (optional)."""
        return self.root / "sending.yaml"

    @property
    def journeys(self) -> Path:
        """``journeys/``."""
        return self.root / "journeys"

    @property
    def templates(self) -> Path:
        """``templates/``: the email templates."""
        return self.root / "templates"

    @property
    def integrations(self) -> Path:
        """``integrations/``: the inbound webhooks of community platforms (optional)."""
        return self.root / INTEGRATIONS_DIR


@dataclass(frozen=True)
class Workspace:
    """Every marketer file of a workspace, loaded and checked together.

    Attributes:
        paths: Where each file is.
        config: What ``workspace.yaml`` declares (languages, UI strings).
        brand: What ``brand.yaml`` declares; None when the workspace has none.
        questionnaire: The questionnaire.
        content_items: The library's items, sorted by key.
        segment_rules: The rule segments, in file order.
        sending_rules: The budget and quiet hours every journey shares.
        journeys: The journeys, in file name order.
        integrations: The inbound webhooks (``integrations/*.yaml``), in file name order.
    """

    paths: WorkspacePaths
    config: WorkspaceConfig
    brand: Brand | None
    questionnaire: Questionnaire
    content_items: list[ContentItemSpec]
    segment_rules: list[SegmentRule]
    sending_rules: SendingRules
    journeys: list[JourneyDefinition]
    integrations: list[Integration] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The workspace folder."""
        return self.paths.root

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages members are written to, the default first."""
        return self.config.languages

    @property
    def question_keys(self) -> list[str]:
        """The questionnaire's question keys, in order."""
        return [question.key for question in self.questionnaire.questions]

    @property
    def segment_keys(self) -> list[str]:
        """The rule segments' keys, in file order."""
        return [rule.key for rule in self.segment_rules]


class _Collected:
    """Problems of every file, and the files' keys for the checks of the files after them."""

    def __init__(self, root: Path, limits: YamlLimits) -> None:
        self.paths = WorkspacePaths(Path(root))
        self.limits = limits
        self.problems: list[Problem] = []
        self.config, problems = read_workspace_config(self.paths.root, limits=limits)
        self.problems += problems

    def brand(self) -> Brand | None:
        brand, problems = read_brand(
            self.paths.root, languages=self.config.languages, limits=self.limits
        )
        self.problems += problems
        return brand

    def questionnaire(self) -> Questionnaire | None:
        loaded = read_questionnaire(
            self.paths.questionnaire, languages=self.config.languages, limits=self.limits
        )
        self.problems += loaded.problems
        return loaded.value

    def segment_rules(self, question_keys: list[str] | None) -> list[SegmentRule] | None:
        # The segmentation and journeys packages import this one: imported when used.
        from nurture.segmentation.rules import read_segment_rules

        loaded = read_segment_rules(
            self.paths.segments,
            question_keys=question_keys,
            languages=self.config.languages,
            limits=self.limits,
        )
        self.problems += loaded.problems
        return loaded.value.segments if loaded.value is not None else None


def _keys(questionnaire: Questionnaire | None) -> list[str] | None:
    return [q.key for q in questionnaire.questions] if questionnaire is not None else None


def load_workspace(
    root: Path | str,
    *,
    community_name: str = "Example Community",
    public_base_url: str = DEFAULT_PUBLIC_BASE_URL,
    questionnaire_url: str | None = None,
    limits: YamlLimits = DEFAULT_YAML_LIMITS,
    render_limits: RenderLimits = DEFAULT_RENDER_LIMITS,
) -> Workspace:
    """Load every marketer file of a workspace and check them against each other.

    Args:
        root: The workspace folder.
        community_name: As in the settings, for rendering the templates (``brand.yaml``'s
            wins).
        public_base_url: As in the settings (unsubscribe links in the templates).
        questionnaire_url: As in the settings, seen by the templates when given.
        limits: The bounds on size, nesting and aliases of every YAML file.
        render_limits: The bounds of every template render, as delivery renders them.

    Returns:
        The workspace.

    Raises:
        WorkspaceValidationError: Every problem of every file, each with its file and, when
            known, line, column and field.
    """
    from nurture.journeys.loader import read_journeys
    from nurture.journeys.policy import read_sending_rules

    collected = _Collected(Path(root), limits)
    paths, config = collected.paths, collected.config
    brand = collected.brand()
    branding = email_branding(brand, community_name=community_name, strings=config.strings)
    questionnaire = collected.questionnaire()
    question_keys = _keys(questionnaire)
    content_items, problems = read_content_library(
        paths.library, languages=config.languages, limits=limits
    )
    collected.problems += problems
    segment_rules = collected.segment_rules(question_keys)
    sending = read_sending_rules(paths.sending, limits=limits)
    collected.problems += sending.problems
    journeys, problems = read_journeys(
        paths.journeys,
        paths.templates,
        segment_keys=[rule.key for rule in segment_rules] if segment_rules is not None else None,
        question_keys=question_keys,
        limits=limits,
    )
    collected.problems += problems
    integrations, problems = read_integrations(paths.integrations, limits=limits)
    collected.problems += problems
    collected.problems += validate_templates(
        paths.templates,
        community_name=branding.community_name,
        public_base_url=public_base_url,
        shared_context={**branding.context, "questionnaire_url": questionnaire_url}
        if questionnaire_url
        else branding.context,
        subjects=journey_subjects(journeys),
        languages=config.languages,
        strings=branding.strings,
        limits=render_limits,
        transactional=transactional_templates(journeys),
        questionnaire=questionnaire,
    )
    if collected.problems:
        raise WorkspaceValidationError(collected.problems)
    assert questionnaire is not None and segment_rules is not None and sending.value is not None
    return Workspace(
        paths=paths,
        config=config,
        brand=brand,
        questionnaire=questionnaire,
        content_items=content_items,
        segment_rules=segment_rules,
        sending_rules=sending.value,
        journeys=journeys,
        integrations=integrations,
    )


def check_journey_files(
    root: Path | str,
    files: Sequence[Path | str],
    *,
    limits: YamlLimits = DEFAULT_YAML_LIMITS,
) -> tuple[list[JourneyDefinition], list[Problem]]:
    """Check some journey files against a workspace (its questionnaire, rule segments, templates).

    Only what the journeys refer to is read besides them: ``workspace.yaml``, the
    questionnaire (when present) and ``segments.yaml``.

    Args:
        root: The workspace folder.
        files: The journey files, anywhere.
        limits: The bounds on size, nesting and aliases of every YAML file.

    Returns:
        The valid definitions, in the order given, and every problem of the files read.
    """
    from nurture.journeys.loader import read_journey

    collected = _Collected(Path(root), limits)
    questionnaire = collected.questionnaire() if collected.paths.questionnaire.exists() else None
    question_keys = _keys(questionnaire)
    segment_rules = collected.segment_rules(question_keys)
    segment_keys = [rule.key for rule in segment_rules] if segment_rules is not None else None
    definitions: list[JourneyDefinition] = []
    for path in files:
        definition, problems = read_journey(
            Path(path),
            collected.paths.templates,
            segment_keys=segment_keys,
            question_keys=question_keys,
            limits=limits,
        )
        collected.problems += problems
        if definition is not None:
            definitions.append(definition)
    return definitions, collected.problems
