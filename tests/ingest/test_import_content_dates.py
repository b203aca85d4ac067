"""Activity that could not have happened is refused: attending an event before it began, viewing
or clicking an item before it was published (issue 14, point 9). The dates are those of the
content library as synced to the database."""

import datetime as dt
import json

import pytest

from nurture.ingest import EARLY_ARRIVAL, PUBLICATION_DAY_START, import_activity, import_members
from nurture.storage.models import ContentItem
from tests.ingest.ingest_helpers import read_rejects, write

MEETUP_START = dt.datetime(2026, 6, 11, 17, 0, tzinfo=dt.UTC)  # 19:00 in Paris
PUBLISHED = dt.datetime(2026, 5, 4, tzinfo=dt.UTC)  # "published: 2026-05-04", midnight UTC


@pytest.fixture(autouse=True)
def library(session, tmp_path):
    import_members(session, write(tmp_path / "m.csv", "external_id,email\nm1,ada@example.org\n"))
    for key, kind, published_at, event_start in (
        ("meetup-paris", "event", dt.datetime(2026, 4, 1, tzinfo=dt.UTC), MEETUP_START),
        ("roi-guide", "article", PUBLISHED, None),
        ("undated-note", "article", None, None),
    ):
        session.add(
            ContentItem(
                key=key,
                title=key,
                url=f"https://example.org/{key}",
                kind=kind,
                language="en",
                text_hash="0" * 64,
                source_path=f"{key}.md",
                published_at=published_at,
                event_start=event_start,
            )
        )
    session.commit()


def _event(kind, key, when):
    return json.dumps(
        {"member": "m1", "type": kind, "occurred_at": when.isoformat(), "content_key": key}
    )


def test_impossible_activity_is_refused_with_the_reason(session, tmp_path):
    lines = [
        _event("event_attended", "meetup-paris", MEETUP_START - dt.timedelta(days=30)),  # 1
        _event("event_attended", "meetup-paris", MEETUP_START - EARLY_ARRIVAL),  # 2: doors open
        _event("event_attended", "meetup-paris", MEETUP_START + dt.timedelta(hours=2)),  # 3
        _event("content_view", "roi-guide", PUBLISHED - dt.timedelta(days=3)),  # 4
        _event("email_click", "roi-guide", PUBLISHED - dt.timedelta(hours=15)),  # 5
        _event("content_view", "roi-guide", PUBLISHED - PUBLICATION_DAY_START),  # 6: UTC+14
        _event("content_view", "meetup-paris", dt.datetime(2026, 3, 1, tzinfo=dt.UTC)),  # 7
        _event("content_view", "undated-note", dt.datetime(2001, 1, 1, tzinfo=dt.UTC)),  # 8
        _event("event_attended", "not-in-the-library", dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
        _event("post", "roi-guide", PUBLISHED - dt.timedelta(days=3)),  # 10: not a reading
    ]
    rejects_path = tmp_path / "rejects.csv"

    summary = import_activity(session, write(tmp_path / "a.jsonl", "\n".join(lines)), rejects_path)

    assert (summary.read, summary.stored, summary.refused) == (10, 6, 4)
    rejects = {int(r["line"]): r for r in read_rejects(rejects_path)}
    assert sorted(rejects) == [1, 4, 5, 7]
    assert {r["field"] for r in rejects.values()} == {"occurred_at"}
    assert rejects[1]["reason"] == (
        "attends 'meetup-paris' at 2026-05-12T17:00:00+00:00, before the event began "
        "(2026-06-11T17:00:00+00:00)"
    )
    assert rejects[4]["reason"] == (
        "views 'roi-guide' at 2026-05-01T00:00:00+00:00, before it was published (2026-05-04)"
    )
    assert rejects[5]["reason"].startswith("clicks 'roi-guide' at 2026-05-03T09:00:00+00:00")
    assert "before it was published (2026-04-01)" in rejects[7]["reason"]


def test_the_same_checks_apply_to_csv_files_and_whole_batches(session, tmp_path):
    rows = "".join(
        f"m1,event_attended,{(MEETUP_START + dt.timedelta(days=offset)).isoformat()},"
        f"meetup-paris,,a{index}\n"
        for index, offset in enumerate((-2, 1, -1, 2, 3))
    )
    path = write(
        tmp_path / "a.csv",
        "member,type,occurred_at,content_key,properties,idempotency_key\n" + rows,
    )

    summary = import_activity(session, path, batch_size=2)

    assert (summary.stored, summary.refused) == (3, 2)
    assert [p.line for p in summary.problems] == [2, 4]
