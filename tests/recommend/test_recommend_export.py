import csv
import datetime as dt
import io
import json
import tracemalloc

import pytest
from sqlalchemy import insert

from nurture.recommend import (
    EXPORT_COLUMNS,
    iter_recommendations,
    write_recommendations,
)
from nurture.storage.models import ContentItem, MatchRun, Member, Recommendation

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def _items(session, n):
    rows = [
        {
            "key": f"item-{i}",
            "title": f"Item {i}",
            "url": f"https://example.org/item-{i}",
            "kind": "article",
            "language": "en",
            "tags": [],
            "text_hash": f"h{i}",
            "source_path": f"library/item-{i}.md",
        }
        for i in range(n)
    ]
    session.execute(insert(ContentItem), rows)
    return sorted(item.id for item in session.query(ContentItem))


def _members(session, n, offset=0):
    rows = [
        {
            "external_id": f"ext-{offset + i}",
            "email": f"m{offset + i}@example.org",
            "joined_at": NOW,
            "language": "fr" if i % 2 else "en",
            "consent_status": "granted",
            "attributes": {},
        }
        for i in range(n)
    ]
    session.execute(insert(Member), rows)
    return sorted(member.id for member in session.query(Member))[offset:]


def _recommend(session, member_ids, item_ids, run_id=None, reason="Popular in the community"):
    rows = [
        {
            "member_id": member_id,
            "content_item_id": item_id,
            "run_id": run_id,
            "rank": rank,
            "score": 1.0 / rank,
            "reason": reason,
        }
        for member_id in member_ids
        for rank, item_id in enumerate(item_ids, start=1)
    ]
    session.execute(insert(Recommendation), rows)


@pytest.fixture
def exported(session):
    run = MatchRun(model="hashing-64", params={})
    session.add(run)
    session.flush()
    items = _items(session, 3)
    members = _members(session, 2)
    _recommend(session, reversed(members), list(reversed(items)), run.id)
    session.flush()
    return run.id


def test_rows_come_member_after_member_best_first(session, exported):
    rows = list(iter_recommendations(session))
    assert [(row.member_email, row.rank) for row in rows] == [
        ("m0@example.org", 1),
        ("m0@example.org", 2),
        ("m0@example.org", 3),
        ("m1@example.org", 1),
        ("m1@example.org", 2),
        ("m1@example.org", 3),
    ]
    first = rows[0]
    assert (first.member_external_id, first.member_language, first.consent_status) == (
        "ext-0",
        "en",
        "granted",
    )
    assert (first.item_key, first.item_title, first.item_kind) == ("item-2", "Item 2", "article")
    assert first.item_url == "https://example.org/item-2"
    assert (first.score, first.reason, first.match_run) == (
        1.0,
        "Popular in the community",
        exported,
    )


def test_csv_has_a_header_and_one_row_per_recommendation(session, exported):
    out = io.StringIO(newline="")
    assert write_recommendations(session, out, "csv") == 6
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert rows[0]["member_email"] == "m0@example.org" and rows[0]["item_key"] == "item-2"
    assert float(rows[1]["score"]) == 0.5


def test_jsonl_holds_the_same_rows(session, exported):
    out = io.StringIO()
    assert write_recommendations(session, out, "jsonl") == 6
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == 6 and tuple(records[0]) == EXPORT_COLUMNS
    assert records[3]["member_external_id"] == "ext-1" and records[3]["rank"] == 1
    assert records[0]["match_run"] == exported


def test_csv_cells_a_spreadsheet_would_run_are_defused(session):
    [item] = _items(session, 1)
    [member] = _members(session, 1)
    session.query(Member).update({"external_id": "=HYPERLINK(1)"})
    _recommend(session, [member], [item], reason="@SUM(A1)")
    out = io.StringIO(newline="")
    write_recommendations(session, out, "csv")
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["member_external_id"] == "'=HYPERLINK(1)" and row["reason"] == "'@SUM(A1)"
    jsonl = io.StringIO()
    write_recommendations(session, jsonl, "jsonl")
    assert json.loads(jsonl.getvalue())["member_external_id"] == "=HYPERLINK(1)"


def test_items_past_their_date_are_left_out(session, exported):
    expired = session.query(ContentItem).filter_by(key="item-1").one()
    expired.expires_at = NOW - dt.timedelta(days=1)
    session.flush()
    rows = list(iter_recommendations(session, now=NOW))
    assert {row.item_key for row in rows} == {"item-0", "item-2"}
    assert len(list(iter_recommendations(session))) == 6


def test_unknown_format_is_refused(session):
    with pytest.raises(ValueError, match="csv or jsonl"):
        write_recommendations(session, io.StringIO(), "xlsx")  # type: ignore[arg-type]


class _Sink:
    def __init__(self):
        self.written = 0

    def write(self, text):
        self.written += len(text)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # memory is the library's
def test_memory_does_not_grow_with_the_export(session):
    items = _items(session, 10)
    _recommend(session, _members(session, 200), items)
    session.commit()
    write_recommendations(session, _Sink(), "csv")  # imports and caches out of the figures

    def peak():
        sink = _Sink()
        tracemalloc.start()
        try:
            rows = write_recommendations(session, sink, "csv")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert sink.written > 0
        return rows, peak

    small_rows, small = peak()
    _recommend(session, _members(session, 2000, offset=200), items)
    session.commit()
    large_rows, large = peak()

    assert (small_rows, large_rows) == (2_000, 22_000)
    assert large < 2 * small, f"peak {large} bytes for 22 000 rows, {small} for 2 000"
