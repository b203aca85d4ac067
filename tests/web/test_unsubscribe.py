import re
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from nurture.delivery import OutboxMailer, TemplateRenderer, deliver_messages, is_suppressed
from nurture.delivery.suppression import find_suppression
from nurture.storage.models import Member, MessageStatus, Suppression

from .conftest import BASE_URL, NOW, SALT, SECRET, token_for

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "content" / "templates"
ONE_CLICK = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}


def _suppressions(session) -> int:
    return session.scalar(select(func.count()).select_from(Suppression))


def test_get_asks_and_changes_nothing(client, session, add_member):
    member = add_member()
    response = client.get(f"/unsubscribe/{token_for(member)}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="en">' in html
    assert '<form method="post">' in html
    assert "m***@example.org" in html and member.email not in html
    assert "Builders &amp; &lt;Co&gt;" in html and "<Co>" not in html
    assert f'href="{BASE_URL}/preferences/{token_for(member)}"' in html
    assert "<script" not in html
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert _suppressions(session) == 0
    assert client.head(f"/unsubscribe/{token_for(member)}").status_code == 200
    assert _suppressions(session) == 0


def test_page_in_the_members_language(client, add_member):
    member = add_member(language="fr-CA")
    html = client.get(f"/unsubscribe/{token_for(member)}").text
    assert '<html lang="fr">' in html
    assert "Me désinscrire" in html


def test_one_click_post_suppresses_the_member(client, session, add_member):
    member = add_member()
    other = add_member()
    url = f"/unsubscribe/{token_for(member)}"
    response = client.post(url, follow_redirects=False, **ONE_CLICK)
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "will send no more emails to m***@example.org" in response.text
    entry = find_suppression(session, member.email, SALT)
    assert (entry.reason, entry.source, entry.created_at) == ("unsubscribed", "one-click", NOW)
    assert not is_suppressed(session, other.email, SALT)
    # Again (a second click, a retry by the mail provider): the same answer, one entry.
    again = client.post(url, follow_redirects=False, **ONE_CLICK)
    assert again.status_code == 200
    assert _suppressions(session) == 1
    # The page now says so, and offers no button.
    page = client.get(url).text
    assert "is unsubscribed" in page and "<form" not in page


def test_one_click_in_any_body_format(client, session, add_member):
    """Mail providers send the RFC 8058 body as multipart too; the token is what counts."""
    member = add_member()
    body = (
        b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n--b--\r\n"
    )
    response = client.post(
        f"/unsubscribe/{token_for(member)}",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 200
    assert is_suppressed(session, member.email, SALT)


def test_the_page_button_unsubscribes(client, session, add_member):
    member = add_member(language="fr")
    response = client.post(
        f"/unsubscribe/{token_for(member)}", data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    assert "Désinscription confirmée" in response.text
    assert is_suppressed(session, member.email, SALT)


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(
    "make_token",
    [
        lambda token: _flip(token, 2),
        lambda token: _flip(token, -2),
        lambda token: token.split(".")[0],
        lambda token: "x" * 700,
        lambda token: "%00%ff",
        lambda token: "é.é",
    ],
)
def test_a_bad_token_gets_a_friendly_400(client, session, add_member, method, make_token):
    member = add_member()
    response = getattr(client, method)(f"/unsubscribe/{make_token(token_for(member))}")
    assert response.status_code == 400
    assert "This link does not work" in response.text
    assert "Ce lien ne fonctionne pas" in response.text
    assert _suppressions(session) == 0


def test_a_token_signed_with_another_secret_is_refused(client, session, add_member):
    from nurture.delivery import make_unsubscribe_token

    member = add_member()
    forged = make_unsubscribe_token(member.id, "guessed", NOW, email=member.email)
    assert client.post(f"/unsubscribe/{forged}", **ONE_CLICK).status_code == 400
    assert _suppressions(session) == 0


def test_a_link_to_an_erased_member_does_not_reach_the_next_one(client, session, add_member):
    """SQLite may give an erased member's id to a newcomer: the old link must not act."""
    erased = add_member("ada@example.org")
    token = token_for(erased)
    member_id = erased.id
    session.delete(erased)
    session.commit()
    assert client.post(f"/unsubscribe/{token}", **ONE_CLICK).status_code == 400
    session.add(Member(id=member_id, email="grace@example.org", joined_at=NOW))
    session.commit()
    assert client.get(f"/unsubscribe/{token}").status_code == 400
    assert client.post(f"/unsubscribe/{token}", **ONE_CLICK).status_code == 400
    assert _suppressions(session) == 0


def test_a_token_without_address_is_refused(client, session, add_member):
    from nurture.delivery import make_unsubscribe_token

    member = add_member()
    token = make_unsubscribe_token(member.id, SECRET, NOW)
    assert client.post(f"/unsubscribe/{token}", **ONE_CLICK).status_code == 400
    assert _suppressions(session) == 0


def _renderer() -> TemplateRenderer:
    return TemplateRenderer(
        TEMPLATES_DIR,
        community_name="Builders",
        public_base_url=BASE_URL,
        unsubscribe_secret=SECRET,
    )


def test_a_queued_message_is_not_sent_after_an_unsubscribe(
    client, session, add_member, add_message, tmp_path
):
    member = add_member()
    message = add_message(member)
    assert client.post(f"/unsubscribe/{token_for(member)}", **ONE_CLICK).status_code == 200
    outbox = tmp_path / "outbox"
    summary = deliver_messages(
        session,
        OutboxMailer(outbox),
        _renderer(),
        [message.id],
        NOW,
        sender_email="community@example.org",
        sender_name="The team",
        suppression_salt=SALT,
    )
    assert (summary.sent, summary.suppressed) == (0, 1)
    session.refresh(message)
    assert message.status is MessageStatus.SUPPRESSED
    assert not list(outbox.glob("*.eml"))


def test_the_link_of_a_rendered_email_unsubscribes(client, session, add_member, add_message):
    """The List-Unsubscribe header of a real email, posted as a mail provider would."""
    member = add_member()
    message = add_message(member)
    rendered = _renderer().render_message(message, member, now=NOW)
    url = re.fullmatch(r"<(.+)>", rendered.headers["List-Unsubscribe"]).group(1)
    assert url.startswith(f"{BASE_URL}/unsubscribe/")
    assert rendered.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    response = client.post(url.removeprefix(BASE_URL), **ONE_CLICK)
    assert response.status_code == 200
    assert is_suppressed(session, member.email, SALT)


def test_a_concurrent_unsubscribe_is_not_an_error(client, session, add_member, monkeypatch):
    """Two clicks at once: the one that loses the race on the unique hash answers 200 too."""
    import nurture.web.app as web_app

    member = add_member()
    real = web_app.suppress_address
    calls = []

    def racing(db, email, salt, *args, **kwargs):
        calls.append(email)
        if len(calls) == 1:  # the other request commits first, then this one inserts
            real(session, email, salt, *args, **kwargs)
            session.commit()
            raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
        return real(db, email, salt, *args, **kwargs)

    monkeypatch.setattr(web_app, "suppress_address", racing)
    response = client.post(f"/unsubscribe/{token_for(member)}", **ONE_CLICK)
    assert response.status_code == 200
    assert len(calls) == 2
    assert _suppressions(session) == 1


def test_a_database_failure_is_a_503(client, add_member, monkeypatch):
    import nurture.web.app as web_app

    def failing(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(web_app, "suppress_address", failing)
    response = client.post(f"/unsubscribe/{token_for(add_member())}", **ONE_CLICK)
    assert response.status_code == 503
    assert "try again" in response.text
