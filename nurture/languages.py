"""The languages nurture writes to members in, and how a member's language tag is reduced to one.

A workspace declares its languages in ``workspace.yaml`` (``languages: [en, fr, de]``; see
:mod:`nurture.workspace.settings`); the first one is its default language. Without the file,
:data:`DEFAULT_LANGUAGES` is in force, so a workspace written before languages were declared
keeps working. This module is a leaf (no nurture import), so that every package can read the
same codes without importing the workspace.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "DEFAULT_LANGUAGES",
    "LANGUAGE_CODE_PATTERN",
    "primary_language",
    "resolve_language",
]

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "fr")
"""The languages of a workspace that declares none; the first is the default language."""

LANGUAGE_CODE_PATTERN = r"^[a-z]{2,3}$"
"""A declared language: an ISO 639 code in lower case (``en``, ``fr``, ``de``)."""


def primary_language(tag: str | None) -> str:
    """The primary subtag of a language tag, lower-cased (``fr-CA``, ``FR_fr`` -> ``fr``).

    Args:
        tag: A language tag, or None.

    Returns:
        The primary subtag, or an empty string when there is none.
    """
    return re.split(r"[-_]", (tag or "").strip().lower(), maxsplit=1)[0]


def resolve_language(tag: str | None, languages: Sequence[str] = DEFAULT_LANGUAGES) -> str:
    """Reduce a member's language (``fr``, ``fr-CA``, ``FR_fr``, ``de``...) to one of ``languages``.

    Args:
        tag: The member's language tag, or None.
        languages: The languages written in; the first is the default.

    Returns:
        The tag's primary language when it is one of ``languages``, else the first of them.
    """
    primary = primary_language(tag)
    return primary if primary in languages else languages[0]
