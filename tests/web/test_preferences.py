import datetime as dt
import shutil
import typing
from html import unescape
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from nurture.delivery import is_suppressed, suppress_address
from nurture.delivery.suppression import find_suppression
from nurture.journeys.models import JourneyDefinition
from nurture.settings import Settings
from nurture.storage.models import Member
from nurture.web import create_app
from nurture.web.pages import CATEGORIES
from nurture.web.preferences import PreferenceOptions, load_preference_options
from tests.pipeline_helpers import CONTENT

from .conftest import NOW, SALT, token_for


def _reload(session, member: Member) -> Member:
    return session.get(Member, member.id, populate_existing=True)


def _checked(html: str, name: str, value: str) -> bool:
    tag = html.split(f'id="{name}-{value}"', 1)[1].split(">", 1)[0]
    return " checked" in tag


def test_the_page_offers_every_journey_category():
    annotation = JourneyDefinition.model_fields["category"].annotation
    assert set(typing.get_args(annotation)) == set(CATEGORIES)


def test_get_shows_the_current_choices(client, add_member):
    member = add_member(categories=["promotion"])
    token = token_for(member)
    response = client.get(f"/preferences/{token}")
    assert response.status_code == 200
    html = response.text
    assert _checked(html, "category", "care")
    assert not _checked(html, "category", "promotion")
    assert not _checked(html, "everything", "yes")
    assert f'<input type="hidden" name="token" value="{token}">' in html
    assert "welcome, thanks, birthdays, milestones" in html
    assert "digest, invitations" in html
    assert '<label for="category-care">' in html and "<legend>" in html
    assert "m***@example.org" in html
    assert response.headers["referrer-policy"] == "no-referrer"


def test_page_in_french(client, add_member):
    html = client.get(f"/preferences/{token_for(add_member(language='fr'))}").text
    assert '<html lang="fr">' in html
    assert "Enregistrer mes préférences" in html


def test_save_categories(client, session, add_member):
    member = add_member()
    token = token_for(member)
    response = client.post(f"/preferences/{token}", data={"token": token, "category": "care"})
    assert response.status_code == 200
    assert "Your preferences are saved." in response.text
    assert not _checked(response.text, "category", "promotion")
    assert _reload(session, member).unsubscribed_categories == ["promotion"]
    # Nothing checked: neither category; both checked: back to everything.
    client.post(f"/preferences/{token}", data={"token": token})
    assert _reload(session, member).unsubscribed_categories == ["care", "promotion"]
    client.post(f"/preferences/{token}", data={"token": token, "category": ["care", "promotion"]})
    assert _reload(session, member).unsubscribed_categories == []
    assert not is_suppressed(session, member.email, SALT)


def test_categories_the_page_does_not_show_are_kept(client, session, add_member):
    member = add_member(categories=["surveys", "care"])
    token = token_for(member)
    client.post(f"/preferences/{token}", data={"token": token, "category": "promotion"})
    assert _reload(session, member).unsubscribed_categories == ["surveys", "care"]


def test_unsubscribe_from_everything(client, session, add_member):
    member = add_member(categories=["promotion"])
    token = token_for(member)
    response = client.post(
        f"/preferences/{token}", data={"token": token, "category": "care", "everything": "yes"}
    )
    assert response.status_code == 200
    entry = find_suppression(session, member.email, SALT)
    assert (entry.reason, entry.source) == ("unsubscribed", "preferences")
    assert "is unsubscribed: Builders &amp; &lt;Co&gt; sends it no emails" in response.text
    # Only the button to come back: the member unsubscribed themselves.
    assert 'name="action" value="resubscribe"' in response.text
    assert 'name="category"' not in response.text
    assert _reload(session, member).unsubscribed_categories == ["promotion"]


def test_a_suppressed_member_is_told_how_to_come_back(client, session, add_member):
    member = add_member(language="fr")
    suppress_address(session, member.email, SALT, "bounced")
    session.commit()
    html = client.get(f"/preferences/{token_for(member)}").text
    assert "contactez l'équipe" in unescape(html) and "<form" not in html


@pytest.mark.parametrize(
    "data",
    [{}, {"token": "other"}, {"category": "care"}, {"token": ["a", "b"]}],
)
def test_the_form_must_repeat_the_token(client, session, add_member, data):
    member = add_member()
    response = client.post(f"/preferences/{token_for(member)}", data=data)
    assert response.status_code == 400
    assert "could not be read" in response.text
    assert _reload(session, member).unsubscribed_categories == []


def test_unreadable_bodies_change_nothing(client, session, add_member):
    member = add_member()
    url = f"/preferences/{token_for(member)}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for body in (b"\xff\xfe", b"token=" + b"x" * 20000, b"&" * 5000):
        assert client.post(url, content=body, headers=form).status_code == 400
    assert _reload(session, member).unsubscribed_categories == []


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_bad_token_gets_a_friendly_400(client, session, add_member, method):
    member = add_member()
    token = token_for(member)[:-3] + "AAA"
    url = f"/preferences/{token}"
    response = client.get(url) if method == "get" else client.post(url, data={"token": token})
    assert response.status_code == 400
    assert "This link does not work" in response.text
    assert _reload(session, member).unsubscribed_categories == []


# --- pause, language, resubscribe -------------------------------------------------------------


def _radio(html: str, name: str, value: str) -> bool:
    return _checked(html, name, value)


def test_the_page_offers_language_and_pause(client, add_member):
    html = client.get(f"/preferences/{token_for(add_member())}").text
    assert _radio(html, "language", "en") and not _radio(html, "language", "fr")
    assert ">Français</label>" in html and ">English</label>" in html
    assert _radio(html, "pause", "keep") and "Keep receiving emails" in html
    assert not _radio(html, "pause", "1w") and not _radio(html, "pause", "4w")
    assert "Pause all emails for 1 week" in html and "Pause all emails for 4 weeks" in html
    assert 'value="none"' not in html  # nothing to resume


@pytest.mark.parametrize(("pause", "weeks"), [("1w", 1), ("4w", 4)])
def test_pause_all_emails(client, session, add_member, pause, weeks):
    member = add_member()
    token = token_for(member)
    response = client.post(
        f"/preferences/{token}",
        data={"token": token, "category": ["care", "promotion"], "pause": pause},
    )
    assert response.status_code == 200
    until = NOW + dt.timedelta(weeks=weeks)
    assert _reload(session, member).paused_until == until
    html = response.text
    assert f"Emails to m***@example.org are paused until {until.date().isoformat()}." in html
    # Saving again as shown keeps the pause; it does not start anew.
    assert _radio(html, "pause", "keep")
    assert f"Stay paused until {until.date().isoformat()}" in html
    client.post(f"/preferences/{token}", data={"token": token, "pause": "keep"})
    assert _reload(session, member).paused_until == until
    # Resume.
    resumed = client.post(f"/preferences/{token}", data={"token": token, "pause": "none"})
    assert _reload(session, member).paused_until is None
    assert "paused until" not in resumed.text


def test_the_pause_end_is_the_members_local_day(client, session, add_member):
    member = add_member(language="fr")
    member.time_zone = "Pacific/Honolulu"  # UTC-10: 09:00 UTC is 23:00 the day before
    session.commit()
    token = token_for(member)
    html = client.post(f"/preferences/{token}", data={"token": token, "pause": "1w"}).text
    assert "suspendus jusqu'au 2026-11-07" in unescape(html)


def test_choose_the_language(client, session, add_member):
    member = add_member()
    token = token_for(member)
    response = client.post(
        f"/preferences/{token}", data={"token": token, "category": "care", "language": "fr"}
    )
    assert _reload(session, member).language == "fr"
    html = response.text
    assert '<html lang="fr">' in html and "Vos préférences sont enregistrées." in html
    assert _radio(html, "language", "fr")
    assert _reload(session, member).unsubscribed_categories == ["promotion"]


def test_resubscribe_after_an_own_unsubscribe(client, session, add_member):
    member = add_member(language="fr")
    token = token_for(member)
    client.post(f"/preferences/{token}", data={"token": token, "everything": "yes"})
    assert is_suppressed(session, member.email, SALT)
    page = client.get(f"/preferences/{token}").text
    assert "Me réabonner" in page
    response = client.post(f"/preferences/{token}", data={"token": token, "action": "resubscribe"})
    assert response.status_code == 200
    assert "Bon retour parmi nous" in unescape(response.text)
    assert not is_suppressed(session, member.email, SALT)
    assert 'name="category"' in response.text  # the whole page again


@pytest.mark.parametrize("reason", ["bounced", "complained", "manual"])
def test_no_resubscribe_after_a_bounce_or_a_complaint(client, session, add_member, reason):
    member = add_member()
    suppress_address(session, member.email, SALT, reason)
    session.commit()
    token = token_for(member)
    page = client.get(f"/preferences/{token}").text
    assert "Resubscribe" not in page and "contact the" in page
    response = client.post(f"/preferences/{token}", data={"token": token, "action": "resubscribe"})
    assert response.status_code == 200
    assert find_suppression(session, member.email, SALT).reason == reason


@pytest.mark.parametrize(
    "data",
    [
        {"category": "surveys"},
        {"category": ["care", "care"]},
        {"language": "xx"},
        {"language": ["en", "fr"]},
        {"pause": "52w"},
        {"pause": ["1w", "4w"]},
        {"everything": "no"},
        {"action": "delete"},
        {"admin": "1"},
    ],
)
def test_a_form_asking_for_what_the_page_does_not_offer_is_refused(
    client, session, add_member, data
):
    member = add_member(categories=["promotion"])
    token = token_for(member)
    response = client.post(f"/preferences/{token}", data={"token": token, **data})
    assert response.status_code == 400
    assert "asks for something this page does not offer" in response.text
    again = _reload(session, member)
    assert (again.unsubscribed_categories, again.language, again.paused_until) == (
        ["promotion"],
        "en",
        None,
    )
    assert not is_suppressed(session, member.email, SALT)


# --- what the workspace offers ----------------------------------------------------------------


def test_the_options_come_from_the_workspace(tmp_path):
    settings = Settings(workspace=CONTENT, data_dir=tmp_path)
    options = load_preference_options(settings)
    assert options == PreferenceOptions("Example Community", ("en", "fr"), ("care", "promotion"))
    # A workspace without a promotion journey does not offer that category.
    workspace = Path(shutil.copytree(CONTENT, tmp_path / "workspace"))
    for name in ("digest", "content_invitation"):
        (workspace / "journeys" / f"{name}.yaml").unlink()
    (workspace / "brand.yaml").unlink()
    settings = Settings(workspace=workspace, data_dir=tmp_path, community_name="Other")
    assert load_preference_options(settings) == PreferenceOptions("Other", ("en", "fr"), ("care",))
    # Files that do not load: the defaults, so that the page still works.
    (workspace / "journeys" / "welcome.yaml").write_text("id: [", encoding="utf-8")
    assert load_preference_options(settings).categories == ("care", "promotion")


def test_only_the_categories_offered_are_listed_and_changed(
    make_client, settings, session, add_member
):
    options = PreferenceOptions("Builders", ("en", "fr", "de"), ("care",))
    client = TestClient(create_app(settings, engine=session.get_bind(), options=options))
    member = add_member(categories=["promotion"])
    token = token_for(member)
    html = client.get(f"/preferences/{token}").text
    assert 'id="category-care"' in html and 'id="category-promotion"' not in html
    assert ">Deutsch</label>" in html
    client.post(f"/preferences/{token}", data={"token": token, "language": "de"})
    assert _reload(session, member).unsubscribed_categories == ["promotion", "care"]
    assert _reload(session, member).language == "de"
    # German pages are not written: English, with German as the member's choice.
    html = client.get(f"/preferences/{token}").text
    assert '<html lang="en">' in html and _radio(html, "language", "de")
    refused = client.post(f"/preferences/{token}", data={"token": token, "category": "promotion"})
    assert refused.status_code == 400
