"""Journey definitions: the typed shape of the YAML files marketers write.

A journey is a trigger (who enters) and a flat list of steps linked by ids; the first step is the
entry. Each step kind and each trigger kind is a model chosen by its ``type`` field, so a new kind
is one more model in the matching union. Field titles and descriptions double as the documentation
and the exported JSON Schema (``nurture.journeys.schema``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "ContentSlot",
    "ExitStep",
    "JourneyDefinition",
    "MemberJoinedTrigger",
    "QuestionnaireAnsweredTrigger",
    "SendStep",
    "Step",
    "Trigger",
    "WaitStep",
    "parse_duration",
]

IDENTIFIER_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
"""Journey and step ids: lower case letters, digits, ``_`` and ``-``."""

TEMPLATE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*$"
"""Template names: a path under the templates folder, without extension and without ``..``."""

LANGUAGE_PATTERN = r"^[a-z]{2}(-[A-Za-z]{2,4})?$"

_DURATION_RE = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
_DURATION_UNITS = ("weeks", "days", "hours", "minutes")


def parse_duration(text: str) -> dt.timedelta:
    """Turn a duration such as ``3d``, ``12h``, ``1w`` or ``1d12h`` into a ``timedelta``.

    Args:
        text: Weeks (``w``), days (``d``), hours (``h``) and minutes (``m``), in that order.

    Returns:
        The duration, always longer than zero.

    Raises:
        ValueError: The text is not such a duration, or is zero.
    """
    match = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"expected a duration like '3d', '12h', '1w' or '1d12h', found {text!r}")
    delta = dt.timedelta(
        **{
            unit: int(value)
            for unit, value in zip(_DURATION_UNITS, match.groups(), strict=True)
            if value
        }
    )
    if delta <= dt.timedelta(0):
        raise ValueError(f"expected a duration longer than zero, found {text!r}")
    return delta


def _check_duration(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as error:
        raise PydanticCustomError("duration", str(error)) from None
    return text


Identifier = Annotated[str, Field(min_length=1, max_length=100, pattern=IDENTIFIER_PATTERN)]
Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(
        title="Duration",
        description="Weeks, days, hours, minutes in that order: '3d', '12h', '1w', '1d12h'.",
        examples=["3d", "12h", "1w"],
    ),
]
SubjectText = Annotated[str, Field(min_length=1, max_length=400)]
LanguageCode = Annotated[str, Field(pattern=LANGUAGE_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- triggers -------------------------------------------------------------------------------


class MemberJoinedTrigger(_Model):
    """Enrol members who joined the community."""

    type: Literal["member_joined"] = Field(title="Trigger type")
    within_days: int | None = Field(
        default=None,
        ge=1,
        title="Joined within days",
        description=(
            "Only members who joined in the last N days; absent: every member who joined and "
            "has no enrollment in this journey yet."
        ),
    )


class QuestionnaireAnsweredTrigger(_Model):
    """Enrol members who answered the questionnaire (at least one answer)."""

    type: Literal["questionnaire_answered"] = Field(title="Trigger type")
    within_days: int | None = Field(
        default=None,
        ge=1,
        title="Answered within days",
        description="Only members whose latest answer is at most N days old; absent: all.",
    )


Trigger = Annotated[
    MemberJoinedTrigger | QuestionnaireAnsweredTrigger,
    Field(discriminator="type", title="Trigger", description="Which members enter the journey."),
]

TRIGGER_KINDS: dict[str, type[MemberJoinedTrigger | QuestionnaireAnsweredTrigger]] = {
    "member_joined": MemberJoinedTrigger,
    "questionnaire_answered": QuestionnaireAnsweredTrigger,
}
"""Trigger model by ``type``."""


# --- steps ----------------------------------------------------------------------------------


class ContentSlot(_Model):
    """Content items picked for the member by the matcher and given to the template as ``items``."""

    count: int = Field(
        default=3, ge=0, le=20, title="Count", description="How many items (0: none)."
    )
    kinds: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        title="Kinds",
        description="Only items of these kinds (article, event, webinar...); absent: any kind.",
    )


def _subject_variant(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "translations"
    return None


Subject = Annotated[
    Annotated[SubjectText, Tag("text")]
    | Annotated[dict[LanguageCode, SubjectText], Tag("translations")],
    Discriminator(
        _subject_variant,
        custom_error_type="subject",
        custom_error_message="expected a subject text or a mapping of language code to text",
    ),
]


class SendStep(_Model):
    """Queue one email to the member, with content picked for them."""

    link_fields: ClassVar[tuple[str, ...]] = ("next",)

    id: Identifier = Field(title="Step id", description="Unique within the journey.")
    type: Literal["send"] = Field(title="Step type")
    template: str = Field(
        max_length=300,
        pattern=TEMPLATE_PATTERN,
        title="Template",
        description=(
            "Template name: templates/<name>.html.j2 (and <name>.txt.j2) in the workspace."
        ),
    )
    subject: Subject = Field(
        title="Subject",
        description=(
            "Subject line, a jinja2 template rendered at delivery ({{ member.first_name }}, "
            "{{ community_name }}); one text, or one per language ({en: ..., fr: ...}). A member "
            "gets their language, else English, else the first one given."
        ),
    )
    content: ContentSlot = Field(
        default_factory=ContentSlot,
        title="Content",
        description="Content items picked for the member (never one they were already sent).",
    )
    next: Identifier = Field(title="Next step", description="Id of the step that follows.")

    def subject_for(self, language: str | None) -> str:
        """The subject source (a jinja2 template) for a member's language.

        Args:
            language: The member's language code (``fr``, ``fr-CA``...), if known.

        Returns:
            The variant for the language, else its base language, else English, else the first.
        """
        if isinstance(self.subject, str):
            return self.subject
        candidates = []
        if language:
            candidates += [language, language.split("-")[0]]
        candidates.append("en")
        for candidate in candidates:
            if candidate in self.subject:
                return self.subject[candidate]
        return next(iter(self.subject.values()))


class WaitStep(_Model):
    """Pause the member for a while before the next step."""

    link_fields: ClassVar[tuple[str, ...]] = ("next",)

    id: Identifier = Field(title="Step id", description="Unique within the journey.")
    type: Literal["wait"] = Field(title="Step type")
    duration: Duration
    next: Identifier = Field(title="Next step", description="Id of the step that follows.")

    @property
    def delta(self) -> dt.timedelta:
        """The wait as a ``timedelta``."""
        return parse_duration(self.duration)


class ExitStep(_Model):
    """End the journey: the enrollment is completed."""

    link_fields: ClassVar[tuple[str, ...]] = ()

    id: Identifier = Field(title="Step id", description="Unique within the journey.")
    type: Literal["exit"] = Field(title="Step type")


Step = Annotated[
    SendStep | WaitStep | ExitStep,
    Field(discriminator="type", title="Step", description="One step, chosen by its type."),
]

STEP_KINDS: dict[str, type[SendStep | WaitStep | ExitStep]] = {
    "send": SendStep,
    "wait": WaitStep,
    "exit": ExitStep,
}
"""Step model by ``type``, used by the graph checks on raw YAML."""


class JourneyDefinition(_Model):
    """A journey: who enters (trigger) and what happens to them (steps, first is the entry)."""

    model_config = ConfigDict(
        title="Journey",
        json_schema_extra={"description": "A nurture journey definition (YAML)."},
    )

    id: Identifier = Field(
        title="Journey id",
        description="Stable key of the journey; a changed definition keeps it and gets a version.",
    )
    name: str = Field(min_length=1, max_length=200, title="Name", description="Readable name.")
    description: str = Field(
        default="", title="Description", description="What the journey is for, for marketers."
    )
    category: Literal["care", "promotion"] = Field(
        title="Category",
        description="care (welcome, thanks...) goes before promotion when a budget must choose.",
    )
    transactional: bool = Field(
        default=False,
        title="Transactional",
        description=(
            "Sent whatever the member's marketing consent (account messages only); default false."
        ),
    )
    priority: int = Field(
        default=100,
        ge=0,
        le=1000,
        title="Priority",
        description="Lower goes first among journeys of the same category.",
    )
    trigger: Trigger
    steps: list[Step] = Field(
        min_length=1,
        title="Steps",
        description="Flat list of steps linked by their next ids; the first step is the entry.",
    )

    _source_path: str = PrivateAttr(default="")

    @property
    def source_path(self) -> str:
        """The file the definition was loaded from (empty when built in code)."""
        return self._source_path

    @property
    def definition_hash(self) -> str:
        """SHA-256 of the canonical JSON of the definition: equal definitions, equal hashes."""
        canonical = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def entry_step(self) -> SendStep | WaitStep | ExitStep:
        """The first step, where every enrollment starts."""
        return self.steps[0]

    def step(self, step_id: str) -> SendStep | WaitStep | ExitStep:
        """The step with id ``step_id``.

        Args:
            step_id: A step id of this journey.

        Returns:
            The step.

        Raises:
            KeyError: No step has that id.
        """
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"journey {self.id!r} has no step {step_id!r}")

    def with_source(self, source_path: str) -> JourneyDefinition:
        """This definition, remembering the file it came from.

        Args:
            source_path: The file the definition was loaded from.

        Returns:
            ``self``, for chaining.
        """
        self._source_path = str(source_path)
        return self
