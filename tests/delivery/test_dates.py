"""Dates and times in emails: the reader's language and zone (or the venue's), always named."""

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from nurture.delivery.dates import event_time, long_date, month_name, parse_moment
from nurture.delivery.rendering import TemplateRenderer

TEMPLATES = Path(__file__).resolve().parents[2] / "content" / "templates"
NNBSP = "\u202f"  # CLDR puts a narrow no-break space before AM / PM


def _label_en(time: str, city: str | None) -> str:
    return f"{time} UTC" if city is None else f"{time} {city} time"


def _label_fr(time: str, city: str | None) -> str:
    return f"{time} UTC" if city is None else f"{time}, heure de {city}"


ONLINE = {"event_start": "2027-03-20T17:00:00+00:00", "venue": None, "time_zone": "Europe/London"}
PARIS = {"event_start": "2027-01-13T18:30:00+01:00", "venue": "Paris", "time_zone": "Europe/Paris"}


@pytest.mark.parametrize(
    ("start", "zone", "label", "language", "expected"),
    [
        # 20 March 2027: New York is already on summer time (-04:00), Paris not yet (+01:00).
        (ONLINE, "America/New_York", _label_en, "en", f"1:00{NNBSP}PM New York time"),
        (ONLINE, "Europe/Paris", _label_fr, "fr", "18 h 00, heure de Paris"),
        # 1 April 2027: Paris has moved to summer time (+02:00).
        (
            {**ONLINE, "event_start": "2027-04-01T17:00:00+00:00"},
            "Europe/Paris",
            _label_fr,
            "fr",
            "19 h 00, heure de Paris",
        ),
        # 10 March 2027: New York not yet on summer time (-05:00).
        (
            {**ONLINE, "event_start": "2027-03-10T17:00:00+00:00"},
            "America/New_York",
            _label_en,
            "en",
            f"12:00{NNBSP}PM New York time",
        ),
        (ONLINE, "Asia/Kolkata", _label_en, "en", f"10:30{NNBSP}PM Kolkata time"),
        (ONLINE, "UTC", _label_en, "en", f"5:00{NNBSP}PM UTC"),
        (ONLINE, "Not/AZone", _label_en, "en", f"5:00{NNBSP}PM UTC"),
    ],
)
def test_an_online_event_is_shown_in_the_members_zone_named(start, zone, label, language, expected):
    assert event_time(start, language, zone, label).endswith(expected)


def test_an_in_person_event_is_shown_in_the_venues_zone_whoever_reads_it() -> None:
    assert event_time(PARIS, "fr", "America/New_York", _label_fr) == (
        "mercredi 13 janvier 2027, 18 h 30, heure de Paris"
    )
    assert event_time(PARIS, "en", "America/New_York", _label_en) == (
        f"Wednesday, January 13, 2027, 6:30{NNBSP}PM Paris time"
    )
    # Stored in UTC by the database, it reads the same.
    stored = {**PARIS, "event_start": "2027-01-13T17:30:00+00:00"}
    assert event_time(stored, "fr", "Asia/Tokyo", _label_fr).endswith("18 h 30, heure de Paris")
    # A venue without a zone cannot be placed: the member's zone is used, named.
    assert event_time({**PARIS, "time_zone": None}, "fr", "UTC", _label_fr).endswith("17 h 30 UTC")


def test_the_date_is_the_one_of_the_readers_zone() -> None:
    late = "2026-12-16T23:30:00+00:00"
    assert long_date(late, "fr", "Europe/Paris") == "17 décembre 2026"
    assert long_date(late, "en", "America/Los_Angeles") == "December 16, 2026"
    online = {"event_start": late}
    assert event_time(online, "en", "Asia/Tokyo", _label_en).startswith("Thursday, December 17")


def test_dates_without_a_time_and_text_that_is_no_date() -> None:
    assert event_time({"event_start": "2027-02-02"}, "en", "UTC", _label_en) == (
        "Tuesday, February 2, 2027"
    )
    assert event_time({"event_start": None}, "en", "UTC", _label_en) == ""
    assert event_time({}, "en", "UTC", _label_en) == ""
    assert long_date("next spring", "en") == "next spring"
    assert long_date(None, "en") == ""
    assert month_name("2026-11-01T08:00:00+00:00", "fr") == "novembre"
    assert month_name("whenever", "fr") == ""
    assert parse_moment("2027-01-05T17:30:00") == dt.datetime(2027, 1, 5, 17, 30, tzinfo=dt.UTC)
    assert parse_moment(dt.date(2027, 1, 5)) == dt.date(2027, 1, 5)
    assert parse_moment(42) is None


def test_an_unknown_language_falls_back_to_english() -> None:
    assert month_name("2026-11-01", "xx") == "November"


def _render(source: str, language: str, zone: str, context: dict, **kwargs) -> str:
    renderer = TemplateRenderer(
        TEMPLATES,
        community_name="Builders",
        public_base_url="https://example.org",
        unsubscribe_secret="secret",
        **kwargs,
    )
    message = SimpleNamespace(
        id=1, template="welcome", subject=source, context=context, journey_key="j", step_id="s"
    )
    member = SimpleNamespace(
        id=1,
        email="a@example.org",
        first_name="A",
        last_name="B",
        language=language,
        time_zone=zone,
    )
    built = renderer.build_context(message, member)
    return renderer.render_subject(source, built, what="test")


def test_templates_format_through_the_renderers_filters() -> None:
    context = {"items": [PARIS, ONLINE], "trigger": {"run_at": "2026-11-01T08:00:00+00:00"}}
    source = (
        "{{ items[0] | event_time }} / {{ items[1] | event_time }} / "
        "{{ trigger.run_at | month_name }}"
    )
    assert _render(source, "fr", "America/New_York", context) == (
        "mercredi 13 janvier 2027, 18 h 30, heure de Paris / samedi 20 mars 2027, 13 h 00, "
        "heure de New York / novembre"
    )
    assert _render("{{ items[1].event_start | long_date }}", "en", "Asia/Tokyo", context) == (
        "March 21, 2027"
    )


def test_a_workspace_names_zones_in_its_own_words() -> None:
    strings = {"de": {"time_in_zone": "{time} Uhr ({city})", "time_in_utc": "{time} Uhr UTC"}}
    text = _render(
        "{{ items[0] | event_time }}",
        "de",
        "UTC",
        {"items": [PARIS]},
        languages=("en", "fr", "de"),
        strings=strings,
    )
    assert text == "Mittwoch, 13. Januar 2027, 18:30 Uhr (Paris)"
