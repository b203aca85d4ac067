"""The preference and unsubscribe pages over real HTTP: uvicorn on a local port, httpx."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from nurture.delivery import find_suppression, is_suppressed
from nurture.storage.models import Member
from nurture.web import create_app

from .conftest import NOW, SALT, token_for


@pytest.fixture
def base_url(settings, engine) -> Iterator[str]:
    """The address of the app, served by uvicorn in a thread for the test."""
    app = create_app(settings, engine=engine, clock=lambda: NOW)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join()


def _reload(session, member: Member) -> Member:
    return session.get(Member, member.id, populate_existing=True)


def test_preferences_over_http(base_url, session, add_member):
    member = add_member(language="fr")
    token = token_for(member)
    with httpx.Client(base_url=base_url) as client:
        page = client.get(f"/preferences/{token}")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["x-frame-options"] == "DENY"
        assert "Faire une pause" in page.text
        saved = client.post(
            f"/preferences/{token}",
            data={"token": token, "category": "care", "pause": "4w", "language": "en"},
        )
        assert saved.status_code == 200 and "Your preferences are saved." in saved.text
    again = _reload(session, member)
    assert again.paused_until == NOW.replace(day=29)
    assert (again.language, again.unsubscribed_categories) == ("en", ["promotion"])


def test_one_click_then_resubscribe_over_http(base_url, session, add_member):
    member = add_member()
    token = token_for(member)
    with httpx.Client(base_url=base_url) as client:
        # RFC 8058: a POST with List-Unsubscribe=One-Click, answered 200 without a redirect.
        done = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and "location" not in done.headers
        assert find_suppression(session, member.email, SALT).source == "one-click"
        back = client.post(f"/preferences/{token}", data={"token": token, "action": "resubscribe"})
        assert back.status_code == 200 and "Welcome back" in back.text
    assert not is_suppressed(session, member.email, SALT)


def test_hostile_requests_get_a_clear_4xx(base_url, session, add_member):
    member = add_member()
    token = token_for(member)
    form = {"content-type": "application/x-www-form-urlencoded"}
    with httpx.Client(base_url=base_url) as client:
        forged = client.get(f"/preferences/{token[:-4]}AAAA")
        assert forged.status_code == 400 and "This link does not work" in forged.text
        huge = client.post(f"/preferences/{token}", content=b"token=" + b"x" * 40000, headers=form)
        assert huge.status_code == 400 and "could not be read" in huge.text
        odd = client.post(f"/preferences/{token}", data={"token": token, "pause": "forever"})
        assert odd.status_code == 400 and "does not offer" in odd.text
        wrong_method = client.put(f"/preferences/{token}")
        assert wrong_method.status_code == 405
    again = _reload(session, member)
    assert (again.paused_until, again.unsubscribed_categories) == (None, [])
