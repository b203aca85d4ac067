"""What the preference page offers a member, and reading what they chose in its form.

The page offers what the workspace declares: its languages (``workspace.yaml``), the journey
categories its non-transactional journeys use (a category no journey sends is not shown) and the
community's name (``brand.yaml``, else the settings). :func:`read_preference_form` turns the
posted form into a :class:`PreferenceChoice` and refuses, with the reason, anything the page did
not offer: an unknown category, language or pause, a field given twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from nurture.errors import NurtureError
from nurture.languages import DEFAULT_LANGUAGES
from nurture.settings import Settings

__all__ = [
    "CATEGORIES",
    "PAUSES",
    "InvalidPreferenceForm",
    "PauseChoice",
    "PreferenceChoice",
    "PreferenceOptions",
    "load_preference_options",
    "pause_end",
    "read_preference_form",
]

logger = logging.getLogger(__name__)

CATEGORIES = ("care", "promotion")
"""The journey categories a member can opt out of, in the order the page lists them."""


class PauseChoice(StrEnum):
    """What the pause buttons of the page ask for."""

    KEEP = "keep"
    """Leave the pause as it is (the page's default choice)."""
    NONE = "none"
    """No pause: emails again from now on."""
    ONE_WEEK = "1w"
    FOUR_WEEKS = "4w"


PAUSES: dict[PauseChoice, dt.timedelta] = {
    PauseChoice.ONE_WEEK: dt.timedelta(weeks=1),
    PauseChoice.FOUR_WEEKS: dt.timedelta(weeks=4),
}
"""How long each pause lasts, from the moment it is saved."""


class InvalidPreferenceForm(NurtureError, ValueError):
    """A posted preference form holds something the page does not offer."""


@dataclass(frozen=True)
class PreferenceOptions:
    """What the preference page offers.

    Attributes:
        community_name: The community's name, as the pages show it.
        languages: The workspace's languages, the default first.
        categories: The journey categories to list, in ``CATEGORIES`` order.
    """

    community_name: str
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    categories: tuple[str, ...] = CATEGORIES


@dataclass(frozen=True)
class PreferenceChoice:
    """What a member asked for in the preference form.

    Attributes:
        resubscribe: Take the address off the suppression list (the resubscribe button).
        everything: Unsubscribe from every email (nothing else is changed then).
        categories: The categories to receive, among those the page lists.
        language: The language to be written in; None: unchanged.
        pause: The pause asked for.
    """

    resubscribe: bool = False
    everything: bool = False
    categories: frozenset[str] = frozenset()
    language: str | None = None
    pause: PauseChoice = PauseChoice.KEEP


def pause_end(
    pause: PauseChoice, now: dt.datetime, current: dt.datetime | None
) -> dt.datetime | None:
    """When emails resume after saving ``pause`` at ``now``; None: no pause.

    Args:
        pause: The choice.
        now: The current time.
        current: The member's pause as stored (kept by ``keep``).

    Returns:
        The end of the pause, or None.
    """
    if pause is PauseChoice.KEEP:
        return current if current is not None and current > now else None
    if pause is PauseChoice.NONE:
        return None
    return now + PAUSES[pause]


def _single(form: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = form.get(name, [])
    if len(values) > 1:
        raise InvalidPreferenceForm(f"{name}: expected one value, found {len(values)}")
    return values[0] if values else None


def read_preference_form(
    form: Mapping[str, Sequence[str]], options: PreferenceOptions
) -> PreferenceChoice:
    """The member's choice from the posted form (the token already checked).

    Args:
        form: The form fields, each with its values (``urllib.parse.parse_qs``).
        options: What the page offers.

    Returns:
        The choice.

    Raises:
        InvalidPreferenceForm: A field the page does not have, a value it does not offer, or
            a single-valued field given more than once.
    """
    known = {"token", "action", "everything", "category", "language", "pause"}
    unknown = sorted(set(form) - known)
    if unknown:
        raise InvalidPreferenceForm(f"unknown field {unknown[0]!r}")
    action = _single(form, "action") or "save"
    if action not in ("save", "resubscribe"):
        raise InvalidPreferenceForm(f"action: expected 'save' or 'resubscribe', found {action!r}")
    everything = _single(form, "everything")
    if everything not in (None, "yes"):
        raise InvalidPreferenceForm(f"everything: expected 'yes', found {everything!r}")
    categories = list(form.get("category", []))
    strange = [c for c in categories if c not in options.categories]
    if strange or len(set(categories)) != len(categories):
        raise InvalidPreferenceForm(
            f"category: expected some of {', '.join(options.categories)}, found "
            f"{', '.join(repr(c) for c in categories)}"
        )
    language = _single(form, "language")
    if language is not None and language not in options.languages:
        raise InvalidPreferenceForm(
            f"language: expected one of {', '.join(options.languages)}, found {language!r}"
        )
    pause_text = _single(form, "pause") or PauseChoice.KEEP.value
    try:
        pause = PauseChoice(pause_text)
    except ValueError:
        raise InvalidPreferenceForm(
            f"pause: expected one of {', '.join(p.value for p in PauseChoice)}, found "
            f"{pause_text!r}"
        ) from None
    return PreferenceChoice(
        resubscribe=action == "resubscribe",
        everything=everything == "yes",
        categories=frozenset(categories),
        language=language,
        pause=pause,
    )


def load_preference_options(settings: Settings) -> PreferenceOptions:
    """What the preference page offers, from the workspace the settings name.

    A workspace file that does not load is logged and left out: the page then offers the
    defaults (English and French, every category, ``Settings.community_name``), so a member
    can always unsubscribe or change what they receive.

    Args:
        settings: The settings (workspace folder, community name).

    Returns:
        The options.
    """
    from nurture.journeys import load_journeys
    from nurture.workspace import load_brand, load_workspace_config

    languages, community = DEFAULT_LANGUAGES, settings.community_name
    categories: tuple[str, ...] = CATEGORIES
    try:
        languages = load_workspace_config(settings.workspace).languages
        brand = load_brand(settings.workspace, languages=languages)
        if brand is not None:
            community = brand.community_name
    except NurtureError as exc:
        logger.error("preference page: the workspace's languages or brand do not load: %s", exc)
    if settings.journeys_dir.is_dir():
        try:
            journeys = load_journeys(settings.journeys_dir, settings.templates_dir)
        except NurtureError as exc:
            logger.error("preference page: the journeys do not load, every category shown: %s", exc)
        else:
            used = {j.category for j in journeys if not j.transactional}
            categories = tuple(c for c in CATEGORIES if c in used)
    return PreferenceOptions(community, tuple(languages), categories)
