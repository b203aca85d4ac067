"""Export the ranked lists for a marketer's own tools: CSV or JSON Lines, streamed.

One row per member and recommended item, best first. Rows identify the member by external id and
e-mail address (what a CRM or an e-mailing tool joins on) and carry their consent status, so the
receiving tool can honour it; they hold nothing else about the member. The rows are read from the
database in batches and written as they come: memory does not grow with the community.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Literal, TextIO

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from nurture.csv_safety import escape_formula
from nurture.storage.models import ContentItem, Member, Recommendation

__all__ = [
    "EXPORT_COLUMNS",
    "EXPORT_FORMATS",
    "ExportFormat",
    "ExportedRecommendation",
    "iter_recommendations",
    "write_recommendations",
]

ExportFormat = Literal["csv", "jsonl"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl")

_BATCH = 1000


@dataclass(frozen=True)
class ExportedRecommendation:
    """One recommended item of one member, as exported.

    Attributes:
        member_external_id: The member's id in the community's own systems, if imported.
        member_email: The member's e-mail address.
        member_language: The member's language (the reason's language).
        consent_status: The member's marketing consent (``granted``, ``unknown``...).
        rank: The item's place in the member's list, from 1 (the ranking's own: items that
            expired or started since are left out, so a rank may be missing).
        item_key: The content item's key (its file name in the library).
        item_title: Its title.
        item_kind: article, event, webinar, masterclass or discussion.
        item_url: Where it lives.
        score: The ranking score (higher is better).
        reason: Why it is recommended, in the member's language.
        match_run: The match run that ranked it.
    """

    member_external_id: str | None
    member_email: str
    member_language: str
    consent_status: str
    rank: int
    item_key: str
    item_title: str
    item_kind: str
    item_url: str
    score: float
    reason: str
    match_run: int | None


EXPORT_COLUMNS = tuple(field.name for field in fields(ExportedRecommendation))
"""The exported columns, in order."""


def iter_recommendations(
    session: Session, *, now: dt.datetime | None = None, batch_size: int = _BATCH
) -> Iterator[ExportedRecommendation]:
    """Every member's recommendations, member after member, best first, read in batches.

    Args:
        session: The database session.
        now: When given, items that expired or events that started by then are left out.
        batch_size: Rows fetched from the database at a time.

    Yields:
        One row per member and recommended item.
    """
    query = (
        select(
            Member.external_id,
            Member.email,
            Member.language,
            Member.consent_status,
            Recommendation.rank,
            ContentItem.key,
            ContentItem.title,
            ContentItem.kind,
            ContentItem.url,
            Recommendation.score,
            Recommendation.reason,
            Recommendation.run_id,
        )
        .join(Member, Member.id == Recommendation.member_id)
        .join(ContentItem, ContentItem.id == Recommendation.content_item_id)
        .order_by(Member.id, Recommendation.rank)
        .execution_options(yield_per=batch_size)
    )
    if now is not None:
        query = query.where(
            or_(ContentItem.expires_at.is_(None), ContentItem.expires_at > now),
            or_(ContentItem.event_start.is_(None), ContentItem.event_start >= now),
        )
    for row in session.execute(query):
        yield ExportedRecommendation(*row)


def _values(row: ExportedRecommendation) -> list[object]:
    return [getattr(row, column) for column in EXPORT_COLUMNS]


def write_recommendations(
    session: Session,
    out: TextIO,
    export_format: ExportFormat = "csv",
    *,
    now: dt.datetime | None = None,
) -> int:
    """Write every member's ranked recommendations to ``out``, as they are read.

    CSV has a header row (:data:`EXPORT_COLUMNS`); text cells that a spreadsheet would run as a
    formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) are prefixed
    with ``'`` (:func:`nurture.csv_safety.escape_formula`, as in the rejects files of imports).
    JSON Lines has one object per line with the same keys, values as stored.

    Args:
        session: The database session.
        out: Where to write (a text stream; for CSV, opened with ``newline=""``).
        export_format: ``csv`` or ``jsonl``.
        now: When given, items that expired or events that started by then are left out.

    Returns:
        The number of rows written (header not counted).

    Raises:
        ValueError: An unknown format.
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {export_format!r}: expected csv or jsonl")
    written = 0
    if export_format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        for row in iter_recommendations(session, now=now):
            writer.writerow([escape_formula(value) for value in _values(row)])
            written += 1
        return written
    for row in iter_recommendations(session, now=now):
        record = dict(zip(EXPORT_COLUMNS, _values(row), strict=True))
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        written += 1
    return written
