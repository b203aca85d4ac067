import typing
from html import unescape

import pytest

from nurture.delivery import is_suppressed, suppress_address
from nurture.delivery.suppression import find_suppression
from nurture.journeys.models import JourneyDefinition
from nurture.storage.models import Member
from nurture.web.pages import CATEGORIES

from .conftest import SALT, token_for


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
