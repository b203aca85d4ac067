"""Every email of a demo run carries the brand's footer, and its preference link works."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from nurture.cli import app
from nurture.runtime import Runtime, settings_from
from nurture.web import create_app
from tests.pipeline_helpers import CONTENT

REASONS = {
    "en": "You receive this email because you joined Example Community",
    "fr": "Vous recevez cet e-mail car vous avez rejoint Example Community",
}
ADDRESS = ["Example Community", "10 rue de la Paix", "75002 Paris, France"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data folder of a small demo run (hashing embedder, no Prefect)."""
    data = tmp_path_factory.mktemp("demo") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NURTURE_EMBEDDING_MODEL", "hashing-64")
        args = ["--workspace", str(CONTENT), "--data-dir", str(data)]
        # At noon UTC: at other hours quiet hours can hold every email of so small a demo.
        demo = ["demo", "--members", "60", "--no-prefect", "--now", "2026-03-02T12:00:00"]
        result = CliRunner().invoke(app, [*args, *demo])
    assert result.exit_code == 0, result.output
    return data


def _emails(data: Path) -> list[email.message.EmailMessage]:
    paths = sorted((data / "outbox").glob("*.eml"))
    assert paths
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in paths
    ]


def test_every_demo_email_carries_the_address_and_the_reason(demo: Path) -> None:
    for message in _emails(demo):
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        language = html.split('<html lang="', 1)[1][:2]
        footer = text.rsplit("-- ", 1)[1]
        assert REASONS[language] in footer, message["Subject"]
        assert "\n".join(ADDRESS) in footer, message["Subject"]
        assert "<br>".join(ADDRESS) in html.split('class="footer', 1)[1]
        assert message["Reply-To"] == "hello@community.example.org"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_preference_link_of_a_demo_email_opens_the_page(demo: Path) -> None:
    message = _emails(demo)[0]
    text = message.get_body(("plain",)).get_content()
    link = next(word for word in text.split() if "/preferences/" in word)
    path = "/preferences/" + link.split("/preferences/", 1)[1]
    settings = settings_from({"workspace": CONTENT, "data_dir": demo})
    with (
        Runtime(settings) as runtime,
        TestClient(create_app(settings, engine=runtime.engine)) as client,
    ):
        page = client.get(path)
    assert page.status_code == 200
    language = message.get_body(("html",)).get_content().split('<html lang="', 1)[1][:2]
    assert f'<html lang="{language}">' in page.text
    assert 'name="pause"' in page.text and 'name="language"' in page.text
