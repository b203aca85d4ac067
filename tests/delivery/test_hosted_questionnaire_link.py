"""NURTURE_QUESTIONNAIRE_URL=hosted: each email links to the member's own signed form."""

from __future__ import annotations

import re

from nurture.delivery.rendering import HOSTED_QUESTIONNAIRE
from nurture.delivery.unsubscribe import read_unsubscribe_token

from .conftest import ITEMS, NOW, SECRET
from .test_rendering import _member, _message


def test_the_welcome_links_to_the_members_signed_form(renderer):
    context = {"items": ITEMS, "questionnaire_url": HOSTED_QUESTIONNAIRE}
    email = renderer.render_message(_message(context=context), _member(), now=NOW)
    links = re.findall(r"https://nurture\.example\.org/questionnaire/([\w.-]+)", email.text)
    assert links, email.text
    assert read_unsubscribe_token(links[0], SECRET).member_id == 7
    assert "questionnaire/" in email.html and HOSTED_QUESTIONNAIRE + "<" not in email.html
