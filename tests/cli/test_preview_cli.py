"""``nurture preview TEMPLATE --member EMAIL``: one email for one real member, as a page."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html
import re
import stat
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from nurture.cli import app
from nurture.delivery import verify_unsubscribe_token
from nurture.errors import InvalidUnsubscribeTokenError, MemberNotFoundError, NurtureError
from nurture.runtime import Runtime, settings_from
from nurture.storage import (
    Answer,
    ContentItem,
    Enrollment,
    Journey,
    Member,
    Message,
    Recommendation,
)
from tests.pipeline_helpers import CONTENT

runner = CliRunner()

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
WELCOME_EVENT = "Welcome evening for newcomers"
POST_TITLE = "How we run our meetups & <why>"


def _item(key: str, title: str, kind: str, language: str = "en", **values: object) -> ContentItem:
    return ContentItem(
        key=key,
        title=title,
        url=f"https://example.org/{key}",
        kind=kind,
        language=language,
        summary=f"About {title}.",
        text_hash=key,
        source_path=f"library/{key}.md",
        **values,
    )


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A database with two members, a few items, recommendations and one enrollment."""
    monkeypatch.setenv("NURTURE_EMBEDDING_MODEL", "hashing-64")
    base = ["--workspace", str(CONTENT), "--data-dir", str(tmp_path / "data")]
    settings = settings_from({"workspace": CONTENT, "data_dir": tmp_path / "data"})
    with Runtime(settings) as runtime, runtime.session() as session:
        ada = Member(email="ada@example.org", first_name="Ada", last_name="Lovelace", joined_at=NOW)
        camille = Member(
            email="camille@example.org",
            first_name="Camille",
            last_name="Martin",
            language="fr",
            joined_at=NOW,
        )
        items = [
            _item("b2b", "Grow a B2B community", "masterclass"),
            _item("moderation", "Moderation without burnout", "article"),
            _item("onboarding", "Onboarding checklists", "discussion"),
            _item("animation", "Animer une communauté", "article", "fr"),
            _item(
                "welcome-evening",
                WELCOME_EVENT,
                "event",
                tags=["welcome event"],
                event_start=NOW + dt.timedelta(days=20),
            ),
        ]
        session.add_all([ada, camille, *items])
        session.flush()
        for member in (ada, camille):
            for rank, item in enumerate(items[:4], start=1):
                session.add(
                    Recommendation(
                        member_id=member.id,
                        content_item_id=item.id,
                        rank=rank,
                        score=1 / rank,
                        reason=f"reason {rank} for {member.first_name}",
                    )
                )
        session.add(Answer(member_id=camille.id, question_key="role", value="manager"))
        session.add(
            Answer(member_id=camille.id, question_key="goals", value=["run_events", "measure_roi"])
        )
        journey = Journey(
            key="first_contribution",
            version=1,
            definition_hash="h",
            definition={},
            source_path="journeys/first_contribution.yaml",
        )
        session.add(journey)
        session.flush()
        session.add(
            Enrollment(
                journey_id=journey.id,
                journey_key="first_contribution",
                member_id=ada.id,
                context={"event": {"type": "post", "properties": {"title": POST_TITLE}}},
            )
        )
    return base


def _preview(base: list[str], *args: str) -> tuple[str, str]:
    """Run the command; return its output and the page it wrote."""
    result = runner.invoke(app, [*base, "preview", *args])
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip().splitlines()[-1])
    assert path.is_file(), result.output
    return result.output, path.read_text(encoding="utf-8")


def _frame(page: str) -> str:
    """The HTML part, as the page's frame shows it."""
    found = re.search(r'srcdoc="([^"]*)"', page)
    assert found is not None
    return html.unescape(found.group(1))


def _text_part(page: str) -> str:
    found = re.search(r"<pre>(.*)</pre>", page, re.DOTALL)
    assert found is not None
    return html.unescape(found.group(1))


def test_preview_is_a_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert "preview" in result.output
    help_text = runner.invoke(app, ["preview", "--help"]).output
    for option in ("--member", "--output", "--journey", "--step", "--language", "--send-to"):
        assert option in help_text


def test_preview_writes_a_page_with_subject_html_and_text(workspace: list[str]) -> None:
    output, page = _preview(workspace, "welcome", "--member", "ADA@example.org")
    assert "welcome for ada@example.org (en): Welcome to Example Community, Ada!" in output
    path = Path(output.strip().splitlines()[-1])
    assert path.name == "welcome-en-1.html" and path.parent.name == "previews"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert page.startswith("<!DOCTYPE html>")
    assert "<h1>Preview: Welcome to" in page and "Ada!</h1>" in page
    assert "Ada Lovelace &lt;ada@example.org&gt;" in page
    assert "welcome / send_welcome" in page
    email, text = _frame(page), _text_part(page)
    for part in (email, text):
        assert "Hi Ada," in part
        assert "Grow a B2B community" in part and "reason 1 for Ada" in part
        assert WELCOME_EVENT in part  # the welcome_event slot: upcoming events
    assert "Animer une communauté" not in text  # the welcome email shows 3 items
    assert 'style="' in email and "<style>@media" in email  # CSS inlined


def test_preview_in_the_members_language_or_the_one_asked_for(workspace: list[str]) -> None:
    _, page = _preview(workspace, "welcome", "--member", "camille@example.org")
    assert "Bonjour Camille," in _text_part(page)
    # The only welcome event is in English: a French email leaves its slot empty and says so.
    assert WELCOME_EVENT not in page
    assert "La date du prochain n'est pas encore fixée" in _text_part(page)
    assert "Bienvenue dans Example Community, Camille !" in page
    output, page = _preview(workspace, "welcome", "--member", "ada@example.org", "--language", "fr")
    assert "Bonjour Ada," in _text_part(page)
    assert "welcome-fr-1.html" in output


def test_preview_leaves_out_what_the_member_was_already_sent(
    workspace: list[str], tmp_path: Path
) -> None:
    settings = settings_from({"workspace": CONTENT, "data_dir": tmp_path / "data"})
    with Runtime(settings) as runtime, runtime.session() as session:
        ada = session.scalars(select(Member).where(Member.email == "ada@example.org")).one()
        enrollment = session.scalars(select(Enrollment)).one()
        session.add(
            Message(
                enrollment_id=enrollment.id,
                step_id="send_thanks",
                member_id=ada.id,
                journey_key="first_contribution",
                template="first_contribution",
                subject="Thanks",
                scheduled_at=NOW,
                context={"items": [{"key": "b2b"}], "slots": {}},
            )
        )
    _, page = _preview(workspace, "welcome", "--member", "ada@example.org")
    text = _text_part(page)
    assert "Grow a B2B community" not in text
    assert "Moderation without burnout" in text and "Onboarding checklists" in text
    assert "Animer une communauté" not in text  # a French item is never in an English email
    assert WELCOME_EVENT in text


def test_preview_reads_what_the_trigger_recorded_or_a_sample(workspace: list[str]) -> None:
    _, page = _preview(workspace, "first_contribution", "--member", "ada@example.org")
    assert POST_TITLE in _text_part(page)
    assert html.escape(POST_TITLE, quote=False) in _frame(page)
    _, page = _preview(workspace, "milestone", "--member", "ada@example.org")
    assert "1,000" in _text_part(page)


def test_preview_of_a_named_step_and_to_a_chosen_file(workspace: list[str], tmp_path: Path) -> None:
    target = tmp_path / "out" / "followup.html"
    output, page = _preview(
        workspace,
        "welcome_followup",
        "--member",
        "ada@example.org",
        "--journey",
        "welcome",
        "--output",
        str(target),
    )
    assert str(target.resolve()) in output
    assert "welcome / " in page and "Hi Ada," in _text_part(page)


def test_preview_changes_nothing_and_its_links_unsubscribe_nobody(
    workspace: list[str], tmp_path: Path
) -> None:
    settings = settings_from({"workspace": CONTENT, "data_dir": tmp_path / "data"})

    def counts() -> tuple[int, int, int]:
        with Runtime(settings) as runtime, runtime.session() as session:
            return (
                session.scalar(select(func.count()).select_from(Message)) or 0,
                session.scalar(select(func.count()).select_from(Enrollment)) or 0,
                len(
                    session.scalars(select(Member).where(Member.consent_status == "granted")).all()
                ),
            )

    before = counts()
    _, page = _preview(workspace, "reengagement", "--member", "ada@example.org")
    assert counts() == before
    token = re.search(r"/unsubscribe/([A-Za-z0-9._-]+)", page)
    assert token is not None
    with pytest.raises(InvalidUnsubscribeTokenError):
        verify_unsubscribe_token(token.group(1), settings.unsubscribe_secret.get_secret_value())
    assert "nothing was sent" in page


def test_an_unknown_member_is_named(workspace: list[str]) -> None:
    result = runner.invoke(app, [*workspace, "preview", "welcome", "--member", "nobody@x.org"])
    assert isinstance(result.exception, MemberNotFoundError)
    assert "nobody@x.org" in str(result.exception)


def test_an_unknown_template_lists_the_available_ones(workspace: list[str]) -> None:
    result = runner.invoke(app, [*workspace, "preview", "welcom", "--member", "ada@example.org"])
    assert isinstance(result.exception, NurtureError)
    message = str(result.exception)
    assert "'welcom'" in message
    for name in ("welcome", "welcome_followup", "digest", "birthday"):
        assert name in message


def test_a_journey_that_does_not_send_the_template_is_refused(workspace: list[str]) -> None:
    result = runner.invoke(
        app,
        [*workspace, "preview", "welcome", "--member", "ada@example.org", "--journey", "digest"],
    )
    assert isinstance(result.exception, NurtureError)
    assert "journeys that send it: welcome" in str(result.exception)
    unknown = runner.invoke(
        app, [*workspace, "preview", "welcome", "--member", "ada@example.org", "--journey", "nope"]
    )
    assert "no journey 'nope'" in str(unknown.exception)
    step_alone = runner.invoke(
        app, [*workspace, "preview", "welcome", "--member", "ada@example.org", "--step", "x"]
    )
    assert step_alone.exit_code == 2
    language = runner.invoke(
        app, [*workspace, "preview", "welcome", "--member", "ada@example.org", "--language", "de"]
    )
    assert language.exit_code == 2


def test_send_to_sends_one_marked_test_and_records_nothing(
    workspace: list[str], tmp_path: Path
) -> None:
    settings = settings_from({"workspace": CONTENT, "data_dir": tmp_path / "data"})

    def messages() -> int:
        with Runtime(settings) as runtime, runtime.session() as session:
            return session.scalar(select(func.count()).select_from(Message)) or 0

    before = messages()
    output, page = _preview(
        workspace, "welcome", "--member", "camille@example.org", "--send-to", " Tester@Example.org "
    )
    assert "test sent to Tester@Example.org through outbox: [TEST] Bienvenue" in output
    assert "a test copy ([TEST] subject) was sent to Tester@Example.org" in page
    assert messages() == before
    sent = list((tmp_path / "data" / "outbox").glob("*.eml"))
    assert len(sent) == 1
    parsed = email.message_from_bytes(sent[0].read_bytes(), policy=email.policy.default)
    assert parsed["To"] == "Tester@Example.org"
    assert parsed["Subject"] == "[TEST] Bienvenue dans Example Community, Camille !"
    assert parsed["X-Nurture-Test"] == "preview of welcome for member 2"
    assert parsed["Reply-To"] == "hello@community.example.org"
    assert parsed["List-Unsubscribe"] is None and parsed["List-Unsubscribe-Post"] is None
    text = parsed.get_body(("plain",)).get_content()
    assert "Bonjour Camille," in text and "10 rue de la Paix" in text
    assert "camille@example.org" not in parsed.as_string()


@pytest.mark.parametrize("address", ["nobody", "a b@example.org", "x@localhost", "<a@b.c>"])
def test_send_to_needs_an_address(workspace: list[str], tmp_path: Path, address: str) -> None:
    args = ["preview", "welcome", "--member", "ada@example.org", "--send-to", address]
    result = runner.invoke(app, [*workspace, *args])
    assert result.exit_code != 0
    assert "expected an e-mail address" in result.output
    assert not (tmp_path / "data" / "outbox").exists()


def test_preview_quotes_the_members_answers_in_the_language_shown(workspace: list[str]) -> None:
    _, page = _preview(workspace, "welcome", "--member", "camille@example.org")
    assert (
        "Vous nous avez dit ce que vous voulez accomplir dans les six prochains mois : "
        "organiser des événements et mesurer le ROI de la communauté."
    ) in _text_part(page)
    _, page = _preview(workspace, "welcome", "--member", "camille@example.org", "--language", "en")
    assert (
        "you want to achieve in the next six months: run events and measure the community's ROI"
        in (_text_part(page))
    )
    _, page = _preview(workspace, "welcome", "--member", "ada@example.org")
    assert "You told us" not in _text_part(page)  # Ada answered nothing
