"""The content library: Markdown files with YAML front matter, their model, loader and sync.

One file is one content item; its name without ``.md`` is the item's key. A file reads::

    ---
    title: Your first 100 members
    url: https://community.example.org/articles/first-100
    kind: article            # article | event | webinar | masterclass | discussion
    language: en             # one of the workspace's languages (workspace.yaml)
    tags: [growth, b2b]
    summary: One sentence shown in emails.
    published: 2026-09-01
    event_start: 2026-12-03T18:30:00+01:00   # events, webinars and masterclasses
    time_zone: Europe/Paris                 # the IANA zone the event is held in
    venue: La Cantine, Paris                # in person; leave it out for an online event
    expires: 2027-01-31                     # optional: last day the item may be recommended
    ---
    The body, in Markdown.

Emails show an online event in each member's own time zone, and an in-person one (it has a
``venue``) in its ``time_zone``, named ("18 h 30, heure de Paris"): an in-person event needs
``time_zone``, and ``event_start``'s offset must be that zone's on that day (a winter date in
Paris is ``+01:00``, a summer one ``+02:00``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from nurture.embedding import text_hash
from nurture.errors import ContentValidationError, Problem
from nurture.languages import DEFAULT_LANGUAGES
from nurture.marketer_files.localized import LANGUAGES_CONTEXT, LanguageCode, context_languages
from nurture.marketer_files.located_yaml import (
    DEFAULT_YAML_LIMITS,
    FieldIssues,
    LocatedDocument,
    Position,
    YamlLimits,
)
from nurture.marketer_files.model_files import describe_found, read_front_matter, validate_document
from nurture.storage.models import ContentItem, utcnow

__all__ = [
    "EMBEDDING_BODY_CHARS",
    "SCHEDULED_KINDS",
    "ContentItemSpec",
    "ContentKind",
    "ContentSyncSummary",
    "load_content_item",
    "load_content_library",
    "read_content_library",
    "sync_content_items",
]

ContentKind = Literal["article", "event", "webinar", "masterclass", "discussion"]
"""What a content item is."""

SCHEDULED_KINDS: frozenset[str] = frozenset({"event", "webinar", "masterclass"})
"""Kinds that happen at a given time and so need ``event_start``."""

EMBEDDING_BODY_CHARS = 1000
"""How much of the body goes into the text that is embedded (the model reads ~256 tokens)."""

_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_DERIVED_FIELDS = ("key", "body", "source_path")


class ContentItemSpec(BaseModel):
    """A content item as written in the library: front matter, plus key, body and source file."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        pattern=_KEY_RE.pattern,
        max_length=200,  # the length of content_items.key (PostgreSQL refuses longer keys)
        description="Stable identifier: the file name without '.md' (lower case, digits, '-').",
    )
    title: str = Field(min_length=1, max_length=500, description="Title shown to members.")
    url: str = Field(
        pattern=r"^https?://\S+$", max_length=2000, description="Where members read or register."
    )
    kind: ContentKind = Field(description="article, event, webinar, masterclass or discussion.")
    language: LanguageCode = Field(
        description="Language the item is written in: one of the workspace's languages."
    )
    tags: list[str] = Field(
        default_factory=list,
        description="Topics, lower-cased and without repeats (used in matching and reasons).",
    )
    summary: str = Field(min_length=1, description="One sentence, shown in emails.")
    body: str = Field(min_length=1, description="The Markdown after the front matter.")
    published: dt.date | None = Field(default=None, description="Publication date.")
    event_start: AwareDatetime | None = Field(
        default=None,
        description="When an event, webinar or masterclass starts, with its UTC offset.",
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="The IANA time zone the event is held in (Europe/Paris); needed with a venue.",
    )
    venue: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Where an in-person event takes place; none for an online event.",
    )
    expires: dt.date | None = Field(
        default=None, description="Last day the item may be recommended (inclusive)."
    )
    source_path: str = Field(description="The file the item was read from.")

    @field_validator("tags")
    @classmethod
    def _normalise_tags(cls, tags: list[str]) -> list[str]:
        normalised: list[str] = []
        for tag in tags:
            cleaned = " ".join(tag.split()).lower()
            if cleaned and cleaned not in normalised:
                normalised.append(cleaned)
        return normalised

    @field_validator("language")
    @classmethod
    def _declared_language(cls, language: str, info: ValidationInfo) -> str:
        languages = context_languages(info.context)
        if language not in languages:
            raise ValueError(
                f"language {language!r} is not one of the workspace's languages "
                f"({', '.join(languages)}); declare it in workspace.yaml"
            )
        return language

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        if name is None:
            return None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name!r}: expected an IANA name such as Europe/Paris, "
                "America/New_York or UTC"
            ) from None
        return name

    @field_validator("title", "summary", "body")
    @classmethod
    def _strip(cls, text: str) -> str:
        stripped = text.strip()
        if not stripped:
            raise ValueError("must not be blank")
        return stripped

    @model_validator(mode="after")
    def _check_dates(self) -> ContentItemSpec:
        issues: list[tuple[tuple[str | int, ...], str]] = []
        if self.kind in SCHEDULED_KINDS and self.event_start is None:
            issues.append(
                (
                    ("event_start",),
                    f"{'an' if self.kind[0] in 'aeiou' else 'a'} {self.kind} needs 'event_start' "
                    "(date, time and UTC offset, e.g. 2027-01-21T16:00:00+00:00)",
                )
            )
        issues.extend(self._zone_issues())
        if self.expires and self.published and self.expires < self.published:
            issues.append(
                (("expires",), f"expires {self.expires} is before published {self.published}")
            )
        if issues:
            raise FieldIssues(issues)
        return self

    def _zone_issues(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Problems of ``time_zone`` and ``venue``: only for events, the venue's zone named."""
        issues: list[tuple[tuple[str | int, ...], str]] = []
        if self.kind not in SCHEDULED_KINDS:
            issues += [
                ((name,), f"only an event, webinar or masterclass takes {name!r}")
                for name in ("time_zone", "venue")
                if getattr(self, name) is not None
            ]
            return issues
        if self.venue is not None and self.time_zone is None:
            issues.append(
                (
                    ("time_zone",),
                    "an in-person event (it has a venue) needs 'time_zone', the IANA zone of "
                    "the venue (Europe/Paris): emails show its time in that zone",
                )
            )
        if self.time_zone is not None and self.event_start is not None:
            offset = self.event_start.utcoffset()
            expected = self.event_start.astimezone(ZoneInfo(self.time_zone)).utcoffset()
            if offset != expected:
                issues.append(
                    (
                        ("event_start",),
                        f"event_start {self.event_start.isoformat()} has offset "
                        f"{_offset(offset)}, but {self.time_zone} is at {_offset(expected)} on "
                        "that day: write the time as it is on the venue's clock, with that "
                        "zone's offset",
                    )
                )
        return issues

    @property
    def embedding_text(self) -> str:
        """The text embedded for matching: title, summary, tags and the start of the body."""
        body = " ".join(self.body.split())
        if len(body) > EMBEDDING_BODY_CHARS:
            body = body[:EMBEDDING_BODY_CHARS].rsplit(" ", 1)[0]
        return "\n".join(part for part in (self.title, self.summary, ", ".join(self.tags), body))

    @property
    def published_at(self) -> dt.datetime | None:
        """The publication date as midnight UTC."""
        return _midnight_utc(self.published) if self.published else None

    @property
    def expires_at(self) -> dt.datetime | None:
        """When the item stops being recommended: the end of its ``expires`` day, in UTC."""
        return _midnight_utc(self.expires + dt.timedelta(days=1)) if self.expires else None


def _offset(delta: dt.timedelta | None) -> str:
    minutes = int((delta or dt.timedelta()).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _midnight_utc(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def load_content_item(
    path: Path | str,
    *,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    limits: YamlLimits = DEFAULT_YAML_LIMITS,
) -> tuple[ContentItemSpec | None, list[Problem]]:
    """Read one content file, collecting its problems rather than raising.

    Args:
        path: A Markdown file with YAML front matter; its name without ``.md`` is the key.
        languages: The workspace's languages, the only ones an item may be written in.
        limits: The bounds on size (of the whole file), nesting and aliases.

    Returns:
        The item (``None`` when it has problems) and every problem found.
    """
    path = Path(path)
    front, problems = read_front_matter(path, limits=limits)
    if front is None:
        return None, problems
    document = front.document
    if not isinstance(document.data, dict):
        found = "nothing" if document.data is None else describe_found(document.data)
        problems.append(
            Problem(
                path, f"front matter must be a mapping of fields, found {found}", line=2, column=1
            )
        )
        return None, problems
    for name in _DERIVED_FIELDS:
        if name in document.data:
            position = document.positions.get((name,))
            problems.append(
                Problem(
                    path,
                    f"field {name!r} cannot be set in front matter: the key is the file name, "
                    "the body follows the front matter",
                    line=position.line if position else None,
                    column=position.column if position else None,
                    field=name,
                )
            )
    if not _KEY_RE.match(path.stem):
        problems.append(
            Problem(
                path,
                f"file name {path.stem!r} is not a valid key: use lower case letters, digits, "
                "'-' and '_'",
                field="key",
            )
        )
    if problems:
        return None, problems
    data = {**document.data, "key": path.stem, "body": front.body, "source_path": str(path)}
    located = LocatedDocument(data=data, positions=dict(document.positions))
    located.positions[("body",)] = Position(line=front.body_line, column=1)
    return validate_document(
        located, ContentItemSpec, path, context={LANGUAGES_CONTEXT: tuple(languages)}
    )


def read_content_library(
    directory: Path | str,
    *,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    limits: YamlLimits = DEFAULT_YAML_LIMITS,
) -> tuple[list[ContentItemSpec], list[Problem]]:
    """Read every ``*.md`` file under ``directory`` (subfolders included), collecting problems.

    Args:
        directory: The library folder (``library/`` in a workspace).
        languages: The workspace's languages, the only ones an item may be written in.
        limits: The bounds on size, nesting and aliases of each file.

    Returns:
        The valid items, sorted by key, and every problem of every file: the folder is
        missing, a file is invalid, or two files give the same key.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return [], [
            Problem(directory, "content library folder not found (expected a folder of .md)")
        ]
    specs: list[ContentItemSpec] = []
    problems: list[Problem] = []
    first_path: dict[str, Path] = {}
    for path in sorted(directory.rglob("*.md")):
        if path.stem in first_path:
            problems.append(
                Problem(
                    path,
                    f"duplicate key {path.stem!r}: {first_path[path.stem]} has the same file name",
                    field="key",
                )
            )
            continue
        first_path[path.stem] = path
        spec, item_problems = load_content_item(path, languages=languages, limits=limits)
        problems.extend(item_problems)
        if spec is not None:
            specs.append(spec)
    return sorted(specs, key=lambda spec: spec.key), problems


def load_content_library(
    directory: Path | str, *, languages: Sequence[str] = DEFAULT_LANGUAGES
) -> list[ContentItemSpec]:
    """Read every ``*.md`` file under ``directory`` (subfolders included).

    Args:
        directory: The library folder (``library/`` in a workspace).
        languages: The workspace's languages, the only ones an item may be written in.

    Returns:
        The items, sorted by key.

    Raises:
        ContentValidationError: The folder is missing, or some files are invalid, or two files
            give the same key; ``problems`` lists every problem of every file.
    """
    specs, problems = read_content_library(directory, languages=languages)
    if problems:
        raise ContentValidationError(problems)
    return specs


@dataclass(frozen=True)
class ContentSyncSummary:
    """What :func:`sync_content_items` changed.

    Attributes:
        added: Items new to the database.
        updated: Items whose file changed.
        unchanged: Items already up to date (including items removed on an earlier sync).
        removed: Items whose file disappeared, now expired.
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0


def _row_values(spec: ContentItemSpec) -> dict[str, object]:
    return {
        "title": spec.title,
        "url": spec.url,
        "kind": spec.kind,
        "language": spec.language,
        "tags": list(spec.tags),
        "summary": spec.summary,
        "body": spec.body,
        "published_at": spec.published_at,
        "event_start": spec.event_start,
        "event_time_zone": spec.time_zone,
        "venue": spec.venue,
        "expires_at": spec.expires_at,
        "text_hash": text_hash(spec.embedding_text),
        "source_path": spec.source_path,
    }


def sync_content_items(
    session: Session, specs: Sequence[ContentItemSpec], now: dt.datetime | None = None
) -> ContentSyncSummary:
    """Make the ``content_items`` table match the library (the caller commits).

    Items are matched by key: new keys are added, changed ones updated (``text_hash`` tells
    matching when to re-embed). An item whose file disappeared is **not deleted**, because
    recommendations, messages and activity still refer to it; its ``expires_at`` is set to
    ``now`` so nothing recommends it again. If its file comes back, the next sync revives it.

    Args:
        session: A database session.
        specs: The library, as :func:`load_content_library` returns it.
        now: The time removed items expire at; default: the current time.

    Returns:
        How many items were added, updated, left unchanged and removed.

    Raises:
        ValueError: Two specs share a key, or ``now`` is naive.
    """
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValueError(f"naive datetime {now!r}: pass a timezone-aware 'now'")
    by_key: dict[str, ContentItemSpec] = {}
    for spec in specs:
        if spec.key in by_key:
            raise ValueError(f"duplicate content key {spec.key!r} in the specs to sync")
        by_key[spec.key] = spec
    rows = {row.key: row for row in session.scalars(select(ContentItem))}
    added = updated = unchanged = removed = 0
    new_rows: list[dict[str, object]] = []
    for key, spec in by_key.items():
        values = _row_values(spec)
        row = rows.get(key)
        if row is None:
            new_rows.append({"key": key, **values})
            added += 1
            continue
        changed = {name: value for name, value in values.items() if getattr(row, name) != value}
        if changed:
            for name, value in changed.items():
                setattr(row, name, value)
            updated += 1
        else:
            unchanged += 1
    for key, row in rows.items():
        if key in by_key:
            continue
        if row.expires_at is not None and row.expires_at <= now:
            unchanged += 1
            continue
        row.expires_at = now
        removed += 1
    if new_rows:  # one bulk insert, in the library's order: a large library adds in seconds
        session.execute(insert(ContentItem), new_rows)
    session.flush()
    return ContentSyncSummary(added=added, updated=updated, unchanged=unchanged, removed=removed)
