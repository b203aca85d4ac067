import datetime as dt
import shutil
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.embedding import text_hash
from nurture.errors import ContentValidationError, WorkspaceFileError
from nurture.storage.models import ContentItem
from nurture.workspace import (
    SCHEDULED_KINDS,
    ContentItemSpec,
    ContentSyncSummary,
    load_content_library,
    sync_content_items,
)

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "content" / "library"
INVALID = Path(__file__).parent / "invalid" / "content"
NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)

# file -> (line, field or None, words the message must contain)
INVALID_CASES = {
    "broken-yaml.md": (7, None, "invalid YAML"),
    "typo-field.md": (2, "titel", "did you mean 'title'"),
    "wrong-kind.md": (5, "kind", "podcast"),
    "missing-front-matter.md": (1, None, "missing front matter"),
    "unclosed-front-matter.md": (1, None, "never closed"),
    "event-without-start.md": (2, "event_start", "an event needs 'event_start'"),
    "naive-event-start.md": (7, "event_start", "timezone"),
    "duplicate-field.md": (6, "title", "duplicate key 'title'"),
    "key-in-front-matter.md": (3, "key", "file name"),
    "empty-body.md": (8, "body", "blank"),
    "venue-without-zone.md": (2, "time_zone", "an in-person event (it has a venue) needs"),
    "summer-offset-in-winter.md": (7, "event_start", "Europe/Paris is at +01:00 on that day"),
    "unknown-zone.md": (8, "time_zone", "unknown time zone 'Europe/Londn'"),
    "venue-on-an-article.md": (7, "venue", "only an event, webinar or masterclass takes"),
}


def test_every_invalid_fixture_has_a_case():
    assert {path.name for path in INVALID.glob("*.md")} == set(INVALID_CASES)


@pytest.fixture(scope="module")
def library() -> list[ContentItemSpec]:
    return load_content_library(LIBRARY)


def test_real_library_loads_with_both_languages_and_all_kinds(library):
    assert len(library) >= 40
    languages = Counter(spec.language for spec in library)
    assert languages["en"] >= 20 and languages["fr"] >= 20
    assert abs(languages["en"] - languages["fr"]) <= 2
    kinds = Counter(spec.kind for spec in library)
    assert kinds["event"] >= 4 and kinds["webinar"] >= 4
    assert kinds["masterclass"] >= 3 and kinds["discussion"] >= 3
    assert kinds["article"] > len(library) / 3


def test_real_library_is_sorted_and_consistent(library):
    keys = [spec.key for spec in library]
    assert keys == sorted(keys)
    for spec in library:
        assert spec.url.startswith("https://community.example.org/")
        assert Path(spec.source_path).stem == spec.key
        assert spec.published is not None
        assert 100 <= len(spec.body.split()) <= 300, spec.key
        if spec.kind in SCHEDULED_KINDS:
            assert spec.event_start is not None and spec.event_start.utcoffset() is not None
    french = [spec for spec in library if spec.language == "fr"]
    assert all(spec.key.startswith("fr-") for spec in french)


def test_real_library_has_past_and_upcoming_events(library):
    starts = [spec.event_start for spec in library if spec.event_start]
    assert any(start < NOW for start in starts)
    assert sum(start > NOW for start in starts) >= 8


def test_embedding_text_holds_title_summary_tags_and_body_start(library):
    spec = library[0]
    text = spec.embedding_text
    assert text.startswith(spec.title)
    assert spec.summary in text
    assert ", ".join(spec.tags) in text
    assert " ".join(spec.body.split())[:50] in text


@pytest.mark.parametrize("name", sorted(INVALID_CASES))
def test_invalid_file_names_file_line_and_field(name, tmp_path):
    shutil.copy(INVALID / name, tmp_path / name)
    with pytest.raises(ContentValidationError) as caught:
        load_content_library(tmp_path)
    line, field, words = INVALID_CASES[name]
    matching = [
        problem
        for problem in caught.value.problems
        if problem.line == line and problem.field == field and words in problem.message
    ]
    assert matching, caught.value.problems
    assert Path(matching[0].path).name == name
    assert f"{name}:{line}" in str(caught.value)
    assert isinstance(caught.value, WorkspaceFileError) and isinstance(caught.value, ValueError)


def test_every_broken_file_is_reported_at_once(tmp_path):
    for name in INVALID_CASES:
        shutil.copy(INVALID / name, tmp_path / name)
    shutil.copy(LIBRARY / "grow-b2b-community-first-100.md", tmp_path)
    with pytest.raises(ContentValidationError) as caught:
        load_content_library(tmp_path)
    named = {Path(problem.path).name for problem in caught.value.problems}
    assert named == set(INVALID_CASES)


def test_same_key_in_two_folders_is_a_problem(tmp_path):
    for folder in ("en", "more"):
        (tmp_path / folder).mkdir()
        shutil.copy(LIBRARY / "grow-b2b-community-first-100.md", tmp_path / folder)
    with pytest.raises(
        ContentValidationError, match="duplicate key 'grow-b2b-community-first-100'"
    ):
        load_content_library(tmp_path)


def test_invalid_file_name_is_a_problem(tmp_path):
    shutil.copy(LIBRARY / "grow-b2b-community-first-100.md", tmp_path / "Grow B2B.md")
    with pytest.raises(ContentValidationError) as caught:
        load_content_library(tmp_path)
    assert caught.value.problems[0].field == "key"


def test_key_longer_than_its_column_is_a_problem(tmp_path):
    name = "a" * 201 + ".md"  # content_items.key holds 200 characters
    shutil.copy(LIBRARY / "grow-b2b-community-first-100.md", tmp_path / name)
    with pytest.raises(ContentValidationError) as caught:
        load_content_library(tmp_path)
    assert caught.value.problems[0].field == "key"


def test_missing_folder_is_a_problem(tmp_path):
    with pytest.raises(ContentValidationError, match="not found"):
        load_content_library(tmp_path / "nowhere")


def _spec(key: str = "an-article", **changes) -> ContentItemSpec:
    values = {
        "key": key,
        "title": "An article",
        "url": f"https://community.example.org/articles/{key}",
        "kind": "article",
        "language": "en",
        "tags": ["Growth", " growth ", "ROI"],
        "summary": "A summary.",
        "body": "Some body text.",
        "published": dt.date(2026, 9, 1),
        "source_path": f"library/{key}.md",
    }
    return ContentItemSpec(**(values | changes))


def test_spec_normalises_tags_and_derives_times():
    spec = _spec(expires=dt.date(2026, 12, 31))
    assert spec.tags == ["growth", "roi"]
    assert spec.published_at == dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    assert spec.expires_at == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def test_spec_rejects_expiry_before_publication():
    with pytest.raises(ValueError, match="before published"):
        _spec(expires=dt.date(2026, 1, 1))


def _rows(session) -> dict[str, ContentItem]:
    return {row.key: row for row in session.scalars(select(ContentItem))}


def test_sync_adds_updates_and_expires_removed_items(session):
    first = [_spec("a"), _spec("b"), _spec("c")]
    assert sync_content_items(session, first, now=NOW) == ContentSyncSummary(added=3)
    session.commit()
    assert _rows(session)["a"].text_hash == text_hash(first[0].embedding_text)

    second = [_spec("a"), _spec("b", title="A new title")]
    summary = sync_content_items(session, second, now=NOW)
    assert summary == ContentSyncSummary(updated=1, unchanged=1, removed=1)
    session.commit()
    rows = _rows(session)
    assert rows["b"].title == "A new title"
    assert rows["b"].text_hash == text_hash(second[1].embedding_text)
    assert rows["c"].expires_at == NOW  # kept, because recommendations refer to it
    assert rows["a"].expires_at is None

    later = NOW + dt.timedelta(days=1)
    assert sync_content_items(session, second, now=later) == ContentSyncSummary(unchanged=3)
    assert _rows(session)["c"].expires_at == NOW

    revived = sync_content_items(session, [*second, _spec("c")], now=later)
    assert revived == ContentSyncSummary(updated=1, unchanged=2)
    assert _rows(session)["c"].expires_at is None


def test_sync_of_real_library_is_idempotent(session, library):
    assert sync_content_items(session, library, now=NOW).added == len(library)
    session.commit()
    session.expire_all()
    again = sync_content_items(session, library, now=NOW)
    assert again == ContentSyncSummary(unchanged=len(library))


def test_sync_refuses_duplicate_specs(session):
    with pytest.raises(ValueError, match="duplicate content key"):
        sync_content_items(session, [_spec("a"), _spec("a")], now=NOW)


def test_in_person_events_name_their_zone_and_sync_it(session, library):
    paris = next(spec for spec in library if spec.key == "fr-evenement-bienvenue-janvier")
    assert (paris.venue, paris.time_zone) == ("Paris", "Europe/Paris")
    assert all(spec.time_zone for spec in library if spec.venue)
    sync_content_items(session, library, NOW)
    row = session.scalars(select(ContentItem).where(ContentItem.key == paris.key)).one()
    assert (row.venue, row.event_time_zone) == ("Paris", "Europe/Paris")
    online = session.scalars(
        select(ContentItem).where(ContentItem.key == "event-monthly-welcome-december")
    ).one()
    assert online.venue is None
