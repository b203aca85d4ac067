"""``brand.yaml``: the community's name, look, reply-to and the footer every email carries."""

from __future__ import annotations

import shutil
from email import message_from_bytes, policy
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from nurture.delivery import OutgoingEmail
from nurture.delivery.mailers import build_email_message
from nurture.delivery.rendering import list_email_templates
from nurture.delivery.sendgrid_mailer import SendGridMailer
from nurture.errors import WorkspaceValidationError
from nurture.runtime import Runtime
from nurture.settings import Settings
from nurture.storage import Member
from nurture.workspace import Brand, load_brand, load_workspace
from nurture.workspace.brand import email_branding
from tests.pipeline_helpers import CONTENT

ADDRESS = ["Example Community", "10 rue de la Paix", "75002 Paris, France"]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the demo workspace (content/), to change."""
    return Path(shutil.copytree(CONTENT, tmp_path / "workspace"))


def _brand_data(workspace: Path) -> dict:
    return yaml.safe_load((workspace / "brand.yaml").read_text(encoding="utf-8"))


def _write_brand(workspace: Path, data: dict) -> None:
    (workspace / "brand.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")


def _render_all(workspace: Path, tmp_path: Path, language: str) -> list[tuple[str, str, str]]:
    """Every email of the workspace rendered for one member as delivery renders it."""
    settings = Settings(workspace=workspace, data_dir=tmp_path / "data", community_name="Other")
    runtime = Runtime(settings)
    member = Member(id=7, email="ada@example.org", first_name="Ada", language=language)
    rendered = []
    for name in list_email_templates(workspace / "templates"):
        message = SimpleNamespace(
            id=1, template=name, subject="{{ community_name }}", context={},
            journey_key="j", step_id="s",
        )  # fmt: skip
        email = runtime.renderer.render_message(message, member)  # type: ignore[arg-type]
        rendered.append((name, email.html, email.text))
    return rendered


def test_the_demo_brand_loads() -> None:
    brand = load_workspace(CONTENT).brand
    assert brand is not None
    assert brand.community_name == "Example Community"
    assert brand.address_lines == ADDRESS
    assert brand.reply_to == "hello@community.example.org"
    assert set(brand.reason) == {"en", "fr"}


@pytest.mark.parametrize(
    ("language", "reason"),
    [
        ("en", "You receive this email because you joined Example Community"),
        ("fr", "Vous recevez cet e-mail car vous avez rejoint Example Community"),
    ],
)
def test_every_email_carries_the_address_and_the_reason(
    workspace: Path, tmp_path: Path, language: str, reason: str
) -> None:
    emails = _render_all(workspace, tmp_path, language)
    assert len(emails) >= 10
    for name, html, text in emails:
        footer = html.split('class="footer"', 1)[1]
        assert reason in footer, name
        assert "<br>".join(ADDRESS) in footer, name
        text_footer = text.rsplit("-- ", 1)[1]
        assert reason in text_footer, name
        assert "\n".join(ADDRESS) in text_footer, name
        # The brand's name, not the settings'.
        assert "Example Community" in text.splitlines()[0]


def test_colours_and_logo_reach_the_inlined_html(workspace: Path, tmp_path: Path) -> None:
    data = _brand_data(workspace)
    data["colours"]["accent"] = "#AA3300"
    data["logo_url"] = "https://cdn.example.org/logo.png"
    data["community_name"] = "Builders & Co"
    _write_brand(workspace, data)
    _, html, _ = next(e for e in _render_all(workspace, tmp_path, "en") if e[0] == "welcome")
    assert "#2f6f5e" not in html and "#AA3300" in html
    logo = html.split("<img ", 1)[1].split(">", 1)[0]
    assert 'src="https://cdn.example.org/logo.png"' in logo and 'alt="Builders &amp; Co"' in logo


def test_without_a_brand_the_settings_name_and_no_address(workspace: Path, tmp_path: Path) -> None:
    (workspace / "brand.yaml").unlink()
    assert load_workspace(workspace).brand is None
    for _, html, text in _render_all(workspace, tmp_path, "en"):
        assert "You receive this email because you are a member of Other." in text
        assert "#2f6f5e" in html and "footer-address" not in html


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"colours": {"accent": "red"}}, "colours.accent", "should match pattern"),
        ({"logo_url": "http://example.org/logo.png"}, "logo_url", "should match pattern"),
        ({"reply_to": "not an address"}, "reply_to", "expected an e-mail address"),
        ({"postal_address": "   "}, "postal_address", "expected the postal address"),
        ({"reason": {"en": "Because."}}, "reason", "missing: fr"),
        ({"reason": {"en": "A", "fr": "B", "de": "C"}}, "reason", "language de is not declared"),
        ({"reason": {"en": "Hi {name}", "fr": "B"}}, "reason", "the only placeholder"),
        ({"community_name": ""}, "community_name", "at least 1 character"),
        ({"colour": {}}, "colour", "did you mean 'colours'"),
    ],
)
def test_a_bad_brand_names_its_field_and_line(
    workspace: Path, change: dict, field: str, message: str
) -> None:
    data = {**_brand_data(workspace), **change}
    _write_brand(workspace, data)
    with pytest.raises(WorkspaceValidationError) as raised:
        load_workspace(workspace)
    problems = [p for p in raised.value.problems if Path(p.path).name == "brand.yaml"]
    assert problems, raised.value
    text = str(problems[0])
    assert field in text and message in text, text
    assert problems[0].line is not None


def test_missing_required_fields(workspace: Path) -> None:
    _write_brand(workspace, {"community_name": "X"})
    with pytest.raises(WorkspaceValidationError) as raised:
        load_brand(workspace)
    text = str(raised.value)
    assert "postal_address" in text and "reason" in text


def test_branding_puts_the_reason_over_the_workspace_strings() -> None:
    brand = Brand(
        community_name="B",
        postal_address="1 Main St\nSpringfield",
        reason={"en": "Because {community}.", "fr": "Parce que."},
    )
    branding = email_branding(
        brand, community_name="Settings", strings={"en": {"footer_reason": "old", "x": "y"}}
    )
    assert branding.community_name == "B"
    assert branding.strings["en"] == {"footer_reason": "Because {community}.", "x": "y"}
    assert branding.context["brand"]["address_lines"] == ["1 Main St", "Springfield"]
    assert email_branding(None, community_name="S").community_name == "S"


def _email(reply_to: str) -> OutgoingEmail:
    return OutgoingEmail(
        message_id=3, to_email="ada@example.org", to_name="Ada", from_email="team@example.org",
        from_name="Team", subject="Hi", html="<p>Hi</p>", text="Hi", reply_to=reply_to,
    )  # fmt: skip


def test_reply_to_in_every_backend() -> None:
    message = build_email_message(_email("hello@example.org"))
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert parsed["Reply-To"] == "hello@example.org"
    assert "Reply-To" not in build_email_message(_email(""))
    request = SendGridMailer(api_key="SG.test").build_request(_email("hello@example.org"))
    assert request["reply_to"] == {"email": "hello@example.org"}
    assert "reply_to" not in SendGridMailer(api_key="SG.test").build_request(_email(""))
