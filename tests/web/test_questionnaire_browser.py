"""The hosted questionnaire in a real browser: Debian's chromium, headless, driven by Playwright.

The form is filled by its labels (each control must have one) and the keyboard, sent, refused
with a message at the question left empty, then saved; only the local server may be reached.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect, sync_playwright
from sqlalchemy import select

from nurture.settings import Settings
from nurture.storage.models import Answer
from nurture.web import create_app

from .conftest import NOW, token_for
from .test_api import serve

pytestmark = [pytest.mark.e2e, pytest.mark.model]

CONTENT = Path(__file__).resolve().parents[2] / "content"
CHROMIUM = os.environ.get("NURTURE_TEST_CHROMIUM") or shutil.which("chromium") or "chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    """Headless chromium with a fresh profile; requests beyond 127.0.0.1 are refused."""
    executable = shutil.which(CHROMIUM)
    if executable is None:
        pytest.fail(f"no {CHROMIUM}: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile", executable_path=executable, headless=True, args=FLAGS
        )
        context.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith("http://127.0.0.1:")
                else route.abort()
            ),
        )
        yield context
        context.close()


def test_a_member_answers_with_labels_and_keyboard(
    browser, settings: Settings, engine, session, add_member
):
    member = add_member()
    app = create_app(
        settings.model_copy(update={"workspace": CONTENT}), engine=engine, clock=lambda: NOW
    )
    for base_url in serve(app):
        page = browser.new_page()
        page.goto(f"{base_url}/questionnaire/{token_for(member)}")
        expect(page.get_by_role("heading", name="Tell us about yourself")).to_be_visible()
        page.get_by_label("Founder or executive").check()
        page.get_by_label("Grow the number of members").check()
        page.get_by_label("What do you expect from this community?").fill("Peers to learn from")
        page.get_by_role("button", name="Send my answers").click()
        # community_kind is required and was left empty: refused, said at the question.
        expect(page.get_by_role("alert").first).to_contain_text("need your attention")
        kind = page.locator("#q-community_kind")
        expect(kind).to_have_attribute("aria-invalid", "true")
        expect(kind).to_contain_text("Please answer this question.")
        expect(page.get_by_label("Founder or executive")).to_be_checked()
        # The keyboard: Space chooses the focused option, Tab reaches the button, Enter sends.
        page.get_by_label("A customer community").focus()
        page.keyboard.press("Space")
        page.get_by_label("What do you expect from this community?").focus()
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_contain_text("Your answers are saved.")
        page.close()
    stored = dict(
        session.execute(
            select(Answer.question_key, Answer.value).where(Answer.member_id == member.id)
        ).all()
    )
    assert stored == {
        "role": "founder",
        "community_kind": "customer",
        "goals": ["grow_members"],
        "expectations": "Peers to learn from",
    }
