"""Texts and codes in the workspace's languages, shared by every marketer file's model.

A file is validated with the workspace's languages in the pydantic validation context
(``{LANGUAGES_CONTEXT: ("en", "fr")}``); :class:`LocalizedText` then requires a text in each of
them and no other. Without a context (a file read on its own) the defaults apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from nurture.languages import DEFAULT_LANGUAGES, LANGUAGE_CODE_PATTERN, primary_language
from nurture.marketer_files.located_yaml import FieldIssues

__all__ = ["LANGUAGES_CONTEXT", "LanguageCode", "LocalizedText", "context_languages"]

LANGUAGES_CONTEXT = "languages"
"""Key of the workspace's languages in a pydantic validation context (see
:func:`context_languages`)."""

LanguageCode = Annotated[str, Field(pattern=LANGUAGE_CODE_PATTERN, examples=["en", "fr", "de"])]


def context_languages(context: Any) -> tuple[str, ...]:
    """The workspace's languages from a pydantic validation context, else the defaults.

    Args:
        context: ``ValidationInfo.context``: a mapping, or ``None`` outside a workspace load.

    Returns:
        The languages, the default one first.
    """
    if isinstance(context, Mapping) and context.get(LANGUAGES_CONTEXT):
        return tuple(context[LANGUAGES_CONTEXT])
    return DEFAULT_LANGUAGES


class LocalizedText(BaseModel):
    """A text in every language of the workspace (``{en: ..., fr: ...}`` by default).

    The languages are those of the validation context (``{"languages": [...]}``, see
    :func:`~nurture.workspace.config.context_languages`), English and French without one: each
    must be given, and no other.
    """

    model_config = ConfigDict(extra="allow")

    __pydantic_extra__: dict[str, Annotated[str, Field(min_length=1)]] = Field(init=False)

    @model_validator(mode="after")
    def _check_languages(self, info: ValidationInfo) -> LocalizedText:
        languages = context_languages(info.context)
        texts = self.texts
        issues: list[tuple[tuple[str | int, ...], str]] = [
            (
                (code,),
                f"unknown language {code!r} (expected the workspace's languages: "
                f"{', '.join(languages)})",
            )
            for code in texts
            if code not in languages
        ]
        issues += [
            ((code,), f"missing required field {code!r}") for code in languages if code not in texts
        ]
        if issues:
            raise FieldIssues(issues)
        return self

    @property
    def texts(self) -> dict[str, str]:
        """The text by language code."""
        return dict(self.__pydantic_extra__ or {})

    def get(self, language: str, default: str = "en") -> str:
        """The text in ``language``, else in ``default``, else the first one given.

        Args:
            language: A language code such as ``"fr"`` or ``"fr-CA"``.
            default: The language to fall back to (the workspace's default language).

        Returns:
            The localised text.
        """
        texts = self.texts
        code = primary_language(language)
        if code in texts:
            return texts[code]
        return texts.get(default) or next(iter(texts.values()), "")
