"""``brand.yaml``: who the emails come from, how they look, and what the law asks the footer to say.

The file reads::

    community_name: Builders Collective       # the masthead, the subjects' {{ community_name }}
    logo_url: https://example.org/logo.png     # optional; https only; shown in the masthead
    colours:                                   # optional; #rrggbb; the defaults below
      accent: "#2f6f5e"
      ink: "#1f2933"
      muted: "#616e7c"
      paper: "#f7f5f0"
      rule: "#e6e1d6"
    reply_to: hello@example.org                # optional; the Reply-To of every email
    postal_address: |                          # in the footer of every email (CAN-SPAM)
      Builders Collective
      12 rue de la Paix, 75002 Paris, France
    reason:                                    # why the member gets the email, per language
      en: You receive this email because you joined {community}.
      fr: Vous recevez cet e-mail car vous avez rejoint {community}.

The file is optional: without it the emails use ``Settings.community_name``, the default
colours, no logo, no Reply-To and the built-in reason, and carry no postal address, which
``nurture journeys validate`` points out (marketing email must carry one). With it, the
community name, the postal address and a reason in every workspace language are required.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from nurture.errors import Problem, WorkspaceValidationError
from nurture.marketer_files.localized import LANGUAGES_CONTEXT, LanguageCode, context_languages
from nurture.marketer_files.located_yaml import DEFAULT_YAML_LIMITS, YamlLimits
from nurture.marketer_files.model_files import load_model_file

__all__ = [
    "BRAND_FILE",
    "Brand",
    "BrandColours",
    "EmailBranding",
    "default_brand_context",
    "email_branding",
    "load_brand",
    "read_brand",
]

BRAND_FILE = "brand.yaml"
"""The file, at the root of the workspace."""

_COLOUR = r"^#[0-9A-Fa-f]{6}$"
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

Colour = Annotated[str, Field(pattern=_COLOUR, examples=["#2f6f5e"])]


class BrandColours(BaseModel):
    """The colours of the email layout, each ``#rrggbb``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accent: Colour = Field(default="#2f6f5e", description="Masthead, headings, buttons and links.")
    ink: Colour = Field(default="#1f2933", description="Body text.")
    muted: Colour = Field(default="#616e7c", description="Footer and secondary text.")
    paper: Colour = Field(default="#f7f5f0", description="Page background and item cards.")
    rule: Colour = Field(default="#e6e1d6", description="Borders and separators.")


class Brand(BaseModel):
    """What ``brand.yaml`` declares (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    community_name: str = Field(
        min_length=1,
        max_length=200,
        description="The community's name as members know it: the masthead, {{ community_name }}.",
    )
    logo_url: str | None = Field(
        default=None,
        max_length=2000,
        pattern=r"^https://[^\s\"'<>]+$",
        description="An https address of the logo image shown in the masthead; none: the name.",
    )
    colours: BrandColours = Field(
        default_factory=BrandColours, description="The layout's colours, each #rrggbb."
    )
    reply_to: str | None = Field(
        default=None,
        max_length=320,
        description="Where members' replies go (the Reply-To header); none: to the sender.",
    )
    postal_address: str = Field(
        min_length=1,
        max_length=500,
        description="The sender's postal address, in the footer of every email (CAN-SPAM).",
    )
    reason: dict[LanguageCode, Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        description=(
            "Why the member receives the email, one sentence per workspace language; "
            "{community} stands for the community's name."
        ),
    )

    @field_validator("reply_to")
    @classmethod
    def _check_reply_to(cls, value: str | None) -> str | None:
        if value is not None and not _ADDRESS.fullmatch(value.strip()):
            raise ValueError(
                f"expected an e-mail address such as hello@example.org, found {value!r}"
            )
        return value.strip() if value is not None else None

    @field_validator("postal_address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected the postal address, found blank text")
        return value.strip()

    @field_validator("reason")
    @classmethod
    def _check_reason(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        languages = context_languages(info.context)
        missing = [code for code in languages if code not in value]
        if missing:
            raise ValueError(
                f"expected a sentence in every workspace language; missing: {', '.join(missing)}"
            )
        unknown = [code for code in value if code not in languages]
        if unknown:
            raise ValueError(
                f"language {', '.join(unknown)} is not declared in workspace.yaml; expected "
                f"one of: {', '.join(languages)}"
            )
        for code, sentence in value.items():
            names = set(_PLACEHOLDER.findall(sentence)) - {"community"}
            if names or sentence.count("{") != sentence.count("}"):
                raise ValueError(
                    f"{code}: the only placeholder is {{community}}, found {sentence!r}"
                )
        return value

    @property
    def address_lines(self) -> list[str]:
        """The postal address, one line each, blank lines left out."""
        return [line.strip() for line in self.postal_address.splitlines() if line.strip()]

    def template_context(self) -> dict[str, Any]:
        """What the layouts see as ``brand`` (``brand.colours.accent``, ``brand.address_lines``)."""
        return {
            "logo_url": self.logo_url or "",
            "colours": self.colours.model_dump(),
            "postal_address": ", ".join(self.address_lines),
            "address_lines": self.address_lines,
            "reply_to": self.reply_to or "",
        }

    def ui_strings(self) -> dict[str, dict[str, str]]:
        """The reason, per language, as the ``footer_reason`` UI string of the layouts."""
        return {code: {"footer_reason": sentence} for code, sentence in self.reason.items()}


def default_brand_context() -> dict[str, Any]:
    """What the layouts see as ``brand`` when the workspace has no ``brand.yaml``."""
    return {
        "logo_url": "",
        "colours": BrandColours().model_dump(),
        "postal_address": "",
        "address_lines": [],
        "reply_to": "",
    }


@dataclass(frozen=True)
class EmailBranding:
    """What a template renderer takes from the brand.

    Attributes:
        community_name: The brand's community name, else the settings'.
        context: ``{"brand": ...}``, for the renderer's shared context.
        strings: The workspace's UI strings with the brand's reason as ``footer_reason``.
    """

    community_name: str
    context: dict[str, Any]
    strings: dict[str, dict[str, str]]


def email_branding(
    brand: Brand | None,
    *,
    community_name: str,
    strings: Mapping[str, Mapping[str, str]] | None = None,
) -> EmailBranding:
    """What a template renderer takes from ``brand`` (or from the settings without one).

    Args:
        brand: The workspace's brand; None when it has no ``brand.yaml``.
        community_name: ``Settings.community_name``, used without a brand.
        strings: The workspace's UI strings (``workspace.yaml``).

    Returns:
        The community name, the ``brand`` context and the UI strings to render with.
    """
    merged = {code: dict(values) for code, values in (strings or {}).items()}
    if brand is None:
        return EmailBranding(community_name, {"brand": default_brand_context()}, merged)
    for code, values in brand.ui_strings().items():
        merged.setdefault(code, {}).update(values)
    return EmailBranding(brand.community_name, {"brand": brand.template_context()}, merged)


def read_brand(
    root: Path | str,
    *,
    languages: tuple[str, ...] | None = None,
    limits: YamlLimits = DEFAULT_YAML_LIMITS,
) -> tuple[Brand | None, list[Problem]]:
    """Read ``brand.yaml`` of a workspace; an absent file gives None.

    Args:
        root: The workspace folder.
        languages: The workspace's languages (a reason is required in each); default: en, fr.
        limits: The bounds on size, nesting and aliases.

    Returns:
        The brand (None when the file is absent or has problems) and every problem of the file.
    """
    path = Path(root) / BRAND_FILE
    if not path.exists():
        return None, []
    loaded = load_model_file(
        path,
        Brand,
        expected="a mapping with 'community_name', 'postal_address' and 'reason'",
        what="the brand file",
        context={LANGUAGES_CONTEXT: languages} if languages else None,
        limits=limits,
    )
    return loaded.value, loaded.problems


def load_brand(root: Path | str, *, languages: tuple[str, ...] | None = None) -> Brand | None:
    """Read ``brand.yaml`` of a workspace; None when the file is absent.

    Args:
        root: The workspace folder.
        languages: The workspace's languages, the default first.

    Returns:
        The brand, or None.

    Raises:
        WorkspaceValidationError: The file is invalid; every problem with its line and field.
    """
    brand, problems = read_brand(root, languages=languages)
    if problems:
        raise WorkspaceValidationError(problems)
    return brand
