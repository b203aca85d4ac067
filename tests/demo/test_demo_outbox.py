"""The demo's whole outbox, read as members read it: right time, right language, their words.

Runs what ``nurture demo`` runs (a generated community, imported, then one full cycle with the
outbox backend) and reads every ``.eml`` it wrote:

- every event an email links to is shown with its date and time in the member's zone (online)
  or the venue's (in person), the zone named; no raw ISO timestamp is left anywhere;
- no email names an event in another language than its own;
- every welcome quotes what the member said (their expectations, their goals) when they
  answered.

The hashing embedder stands in for the model (the emails' times, languages and quotes do not
depend on it), so this runs without loading it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from nurture.delivery.dates import event_time
from nurture.delivery.member_words import answer_views
from nurture.delivery.rendering import STRINGS
from nurture.demo import generate_library_community
from nurture.orchestration import run_cycle
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.stages import import_file
from nurture.storage import Answer, Member, Message
from nurture.workspace import ContentItemSpec
from tests.pipeline_helpers import CONTENT

N_MEMBERS = 1000
NOW = dt.datetime(2026, 11, 2, 16, 0, tzinfo=dt.UTC)
"""A Monday afternoon in Europe, morning in the Americas: most members are out of quiet hours."""

ISO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
CLOCK = re.compile(r"\b\d{1,2}:\d{2}\u202f?[AP]M\b|\b\d{1,2} h \d{2}\b")


@dataclass(frozen=True)
class Sent:
    """One email of the outbox, with what it was queued from."""

    path: Path
    language: str
    text: str
    html: str
    message: Message
    member: Member
    answers: dict[str, Any]


def _parts(path: Path) -> tuple[str, str, str]:
    parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(parsed, EmailMessage)
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and html is not None, path.name
    html_text = html.get_content()
    match = re.search(r'<html lang="([a-z]+)"', html_text)
    assert match, path.name
    return match.group(1), text.get_content(), html_text


@pytest.fixture(scope="module")
def outbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Sent], Runtime]]:
    settings = Settings(
        workspace=CONTENT,
        data_dir=tmp_path_factory.mktemp("demo-outbox") / "data",
        embedding_model="hashing-64",
        allow_backfill=True,  # as `nurture demo` does: a first run emails its whole community
    )
    with Runtime(settings) as runtime:
        check = runtime.check_workspace()
        specs = check.content_items
        files = generate_library_community(  # as `nurture demo` does
            settings.data_dir / "demo",
            N_MEMBERS,
            7,
            now=NOW.replace(hour=0),
            library=specs,
            questionnaire=check.questionnaire,
        )
        for kind, path in (
            ("members", files.members),
            ("answers", files.answers),
            ("activity", files.activity),
        ):
            summary = import_file(runtime, kind, path)  # type: ignore[arg-type]
            assert summary.refused == 0, summary.problems
        run_cycle(runtime, NOW)
        sent: list[Sent] = []
        with runtime.session() as session:
            for path in sorted(settings.resolved_outbox_dir.glob("*.eml")):
                language, text, html = _parts(path)
                message_id = int(path.name.split("-", 1)[0])
                message = session.get(Message, message_id)
                assert message is not None, path.name
                member = session.get(Member, message.member_id)
                assert member is not None
                answers = dict(
                    session.execute(
                        select(Answer.question_key, Answer.value).where(
                            Answer.member_id == member.id
                        )
                    )
                    .tuples()
                    .all()
                )
                session.expunge(message)
                session.expunge(member)
                sent.append(Sent(path, language, text, html, message, member, answers))
        yield sent, runtime


def _events() -> list[ContentItemSpec]:
    from nurture.workspace import load_content_library

    return [spec for spec in load_content_library(CONTENT / "library") if spec.event_start]


def _label(language: str) -> Any:
    strings = STRINGS[language]

    def label(time: str, city: str | None) -> str:
        if city is None:
            return strings["time_in_utc"].format(time=time)
        return strings["time_in_zone"].format(time=time, city=city)

    return label


def test_the_demo_sends_welcomes_and_more(outbox) -> None:
    sent, _ = outbox
    journeys = {email.message.journey_key for email in sent}
    assert len(sent) >= 30 and "welcome" in journeys, journeys
    assert {email.language for email in sent} == {"en", "fr"}


def test_every_event_time_is_shown_in_the_right_zone_named(outbox) -> None:
    sent, _ = outbox
    events = _events()
    shown = 0
    for email in sent:
        for part in (email.text, email.html):
            assert not ISO_TIMESTAMP.search(part), email.path.name
        clocks = CLOCK.findall(email.text)
        for event in events:
            if event.url not in email.html:
                continue
            fields = {
                "event_start": event.event_start,
                "time_zone": event.time_zone,
                "venue": event.venue,
            }
            expected = event_time(
                fields, email.language, email.member.time_zone, _label(email.language)
            )
            assert expected in email.text, (email.path.name, event.key, expected)
            if event.venue:
                zone = "heure de" if email.language == "fr" else "time"
                assert zone in expected and event.time_zone is not None
            shown += 1
        # Every time of day in the text is followed by the zone it is in.
        for clock in clocks:
            named = re.search(
                re.escape(clock) + r"(, heure de [^.,\n]+| [^.,\n]+ time| UTC)", email.text
            )
            assert named, (email.path.name, clock)
    assert shown >= 20


def test_no_email_names_an_event_in_another_language(outbox) -> None:
    sent, _ = outbox
    events = _events()
    wrong = [
        (email.path.name, event.key)
        for email in sent
        for event in events
        if event.language != email.language
        and (event.url in email.html or event.title in email.text)
    ]
    assert wrong == []


def test_every_welcome_quotes_the_members_own_answer(outbox) -> None:
    sent, runtime = outbox
    questionnaire = runtime.workspace.questionnaire
    welcomes = [email for email in sent if email.message.template == "welcome"]
    quoted = 0
    assert welcomes
    for email in welcomes:
        views = answer_views(email.answers, questionnaire, email.language)
        for key, shown in (("expectations", "text"), ("goals", "phrase")):
            if views[key]["answered"]:
                words = views[key][shown].rstrip(".")
                assert words in email.text, (email.path.name, key)
                assert words in email.html.replace("&#39;", "'"), email.path.name
                quoted += 1
    assert quoted >= len(welcomes) // 2


def test_the_picks_of_an_email_give_reasons_of_their_own(outbox) -> None:
    sent, _ = outbox
    for email in sent:
        quotes = [
            item.get("reason")
            for item in (email.message.context or {}).get("items", [])
            if str(item.get("reason", "")).startswith(("You said", "Vous avez dit"))
        ]
        assert len(quotes) == len(set(quotes)), email.path.name
