import collections
import csv
import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.demo import PERSONAS, generate_demo_community
from nurture.ingest import import_activity, import_answers, import_members
from nurture.storage.models import ActivityEvent, Answer, Member
from nurture.workspace import load_content_library, sync_content_items

REPO = Path(__file__).resolve().parents[2]

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
KEYS = (
    "grow-your-b2b-community",
    "measuring-community-roi",
    "employee-engagement-on-the-intranet",
    "monthly-meetup-paris",
    "hybrid-event-checklist",
    "customer-academy-onboarding",
    "open-source-contributor-guide",
    "github-maintainer-sprint",
)
LANGUAGES = {key: ("fr" if "paris" in key else "en") for key in KEYS}
EXPECTED_ROLE = {
    "b2b_founder": "founder",
    "employee_comms": "internal_comms",
    "event_organiser": "community_manager",
    "customer_educator": "customer_success",
    "oss_maintainer": "developer_advocate",
}


def _rows(path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _lines(path):
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def community(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return generate_demo_community(
        out, 500, seed=3, now=NOW, content_keys=KEYS, content_languages=LANGUAGES
    )


def test_same_seed_gives_byte_identical_files(tmp_path):
    def run(name, seed):
        files = generate_demo_community(tmp_path / name, 120, seed, now=NOW, content_keys=KEYS)
        paths = (files.members, files.answers, files.activity, files.personas)
        return [path.read_bytes() for path in paths]

    assert run("a", 11) == run("b", 11)
    assert run("c", 12) != run("a", 11)


def test_personas_are_balanced_and_drive_answers(community):
    personas = {row["external_id"]: row["persona"] for row in _rows(community.personas)}
    assert collections.Counter(personas.values()) == {p.key: 100 for p in PERSONAS}

    answers = _lines(community.answers)
    roles = collections.defaultdict(collections.Counter)
    for answer in answers:
        if answer["question"] == "role":
            roles[personas[answer["member"]]][answer["value"]] += 1
    for persona, counter in roles.items():
        on_persona = counter[EXPECTED_ROLE[persona]] / sum(counter.values())
        assert 0.55 < on_persona < 0.95, (persona, counter)

    answered = {answer["member"] for answer in answers}
    assert 0.04 < 1 - len(answered) / len(personas) < 0.18  # some skip the questionnaire
    texts = [a["value"] for a in answers if a["question"] == "expectations"]
    assert len(set(texts)) > 0.9 * len(texts)  # free text varies


def test_members_are_realistic(community):
    members = _rows(community.members)
    emails = [member["email"] for member in members]
    assert len(set(emails)) == len(emails)
    assert all(email.split("@")[1] in ("example.org", "example.com") for email in emails)
    french = [member for member in members if member["language"] == "fr"]
    assert 0.35 < len(french) / len(members) < 0.55
    french_zones = {
        "Europe/Paris",
        "Europe/Brussels",
        "America/Montreal",
        "Europe/Zurich",
        "Europe/Luxembourg",
    }
    assert {member["time_zone"] for member in french} <= french_zones
    joined = [dt.datetime.fromisoformat(member["joined_at"]) for member in members]
    assert all(NOW - dt.timedelta(days=731) <= moment <= NOW for moment in joined)
    assert sum(moment > NOW - dt.timedelta(days=30) for moment in joined) >= 10
    assert {member["consent_status"] for member in members} == {"granted"}


def test_activity_follows_personas(community):
    personas = {row["external_id"]: row["persona"] for row in _rows(community.personas)}
    events = _lines(community.activity)
    active = {event["member"] for event in events}
    assert 0.05 < 1 - len(active) / len(personas) < 0.35  # some members are dormant
    assert all(
        NOW - dt.timedelta(days=181) <= dt.datetime.fromisoformat(e["occurred_at"]) <= NOW
        for e in events
    )
    views = collections.Counter(
        event["content_key"]
        for event in events
        if event["type"] == "content_view" and personas[event["member"]] == "oss_maintainer"
    )
    themed = views["open-source-contributor-guide"] + views["github-maintainer-sprint"]
    assert themed > 0.7 * sum(views.values())
    posts = collections.Counter(personas[e["member"]] for e in events if e["type"] == "post")
    assert posts["oss_maintainer"] > posts["employee_comms"]


def test_no_content_keys_no_content_events(tmp_path):
    files = generate_demo_community(tmp_path, 100, seed=1, now=NOW)
    events = _lines(files.activity)
    assert events
    assert all(event["content_key"] is None for event in events)
    assert not {event["type"] for event in events} & {"content_view", "email_click"}


def test_generated_files_import_cleanly(session, tmp_path, questionnaire):
    files = generate_demo_community(
        tmp_path / "demo", 120, seed=5, now=NOW, content_keys=KEYS, questionnaire=questionnaire
    )

    members = import_members(session, files.members, tmp_path / "m.rejects.csv")
    answers = import_answers(session, files.answers, questionnaire, tmp_path / "a.rejects.csv")
    activity = import_activity(session, files.activity, tmp_path / "e.rejects.csv")

    assert (members.refused, answers.refused, activity.refused) == (0, 0, 0)
    assert members.stored == 120
    assert answers.stored == answers.read > 0
    assert activity.stored == activity.read > 0
    count = session.scalar(select(func.count()).select_from(ActivityEvent))
    assert count == activity.read
    assert session.scalar(select(func.count()).select_from(Answer)) == answers.read
    member = session.scalars(select(Member).where(Member.external_id == "demo-00001")).one()
    assert member.attributes.keys() == {"country"}
    assert import_activity(session, files.activity).unchanged == activity.read


def test_naive_now_is_refused(tmp_path):
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_demo_community(tmp_path, 10, now=dt.datetime(2026, 1, 1))


@pytest.fixture(scope="module")
def library():
    return load_content_library(REPO / "content" / "library")


@pytest.fixture(scope="module")
def dated_community(tmp_path_factory, library):
    return generate_demo_community(
        tmp_path_factory.mktemp("dated"),
        600,
        seed=4,
        now=NOW,
        content_keys=[spec.key for spec in library],
        content_languages={spec.key: spec.language for spec in library},
        content_dates={spec.key: spec for spec in library},
    )


def test_nobody_attends_an_event_before_it_starts_or_reads_before_publication(
    dated_community, library
):
    specs = {spec.key: spec for spec in library}
    joined = {
        row["external_id"]: dt.datetime.fromisoformat(row["joined_at"])
        for row in _rows(dated_community.members)
    }
    events = _lines(dated_community.activity)
    kinds = collections.Counter(event["type"] for event in events)
    attended = [event for event in events if event["type"] == "event_attended"]
    read = [event for event in events if event["type"] in ("content_view", "email_click")]
    assert kinds["event_attended"] > 50 and kinds["content_view"] > 500  # the check has work

    for event in attended:
        spec = specs[event["content_key"]]
        moment = dt.datetime.fromisoformat(event["occurred_at"])
        assert spec.event_start is not None, event  # an article is not attended
        assert spec.event_start <= moment <= spec.event_start + dt.timedelta(hours=1), event
        assert moment >= joined[event["member"]] and moment <= NOW, event
    for event in read:
        published = specs[event["content_key"]].published_at
        assert published is None or dt.datetime.fromisoformat(event["occurred_at"]) >= published
    started = {event["content_key"] for event in attended}
    assert started <= {
        key for key, spec in specs.items() if spec.event_start and spec.event_start <= NOW
    }


def test_a_dated_community_imports_cleanly_against_its_library(
    session, tmp_path, dated_community, library
):
    sync_content_items(session, library, now=NOW)
    session.commit()

    import_members(session, dated_community.members)
    activity = import_activity(session, dated_community.activity, tmp_path / "e.rejects.csv")

    assert activity.refused == 0 and activity.stored == activity.read > 0


def test_without_dates_attendance_ignores_event_times(tmp_path, library):
    """Dates are opt-in: without them, the generator writes what it always wrote."""
    keys = [spec.key for spec in library]
    plain = generate_demo_community(tmp_path / "plain", 80, seed=9, now=NOW, content_keys=keys)
    events = _lines(plain.activity)
    specs = {spec.key: spec for spec in library}
    early = [
        event
        for event in events
        if event["type"] == "event_attended"
        and event["content_key"]
        and (specs[event["content_key"]].event_start or NOW)
        > dt.datetime.fromisoformat(event["occurred_at"])
    ]
    assert early  # what the dates fix: attending events before they begin
