"""Mail backends: the settings choose one; a missing secret is a configuration error."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from nurture.delivery import MAIL_BACKENDS, Mailer, OutboxMailer, SmtpMailer, mailer_for, mailers
from nurture.delivery.sendgrid_mailer import SendGridMailer
from nurture.errors import ConfigurationError
from nurture.settings import Settings


@pytest.fixture(autouse=True)
def _no_nurture_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("NURTURE_"):
            monkeypatch.delenv(name)


def _settings(tmp_path, **values) -> Settings:
    return Settings(workspace=tmp_path, data_dir=tmp_path / "data", **values)


def test_the_outbox_is_the_default(tmp_path):
    mailer = mailer_for(_settings(tmp_path))
    assert isinstance(mailer, OutboxMailer)
    assert isinstance(mailer, Mailer)
    assert mailer.outbox_dir == tmp_path / "data" / "outbox"


def test_smtp_takes_every_smtp_setting(tmp_path):
    mailer = mailer_for(
        _settings(
            tmp_path,
            mail_backend="smtp",
            smtp_host="mail.example.org",
            smtp_port=465,
            smtp_security="tls",
            smtp_username="nurture",
            smtp_password="hunter2-secret",
            send_timeout_seconds=3.5,
        )
    )
    assert isinstance(mailer, SmtpMailer)
    assert isinstance(mailer, Mailer)
    assert (mailer.host, mailer.port, mailer.security) == ("mail.example.org", 465, "tls")
    assert (mailer.username, mailer.timeout) == ("nurture", 3.5)
    assert "hunter2-secret" not in repr(mailer)


def test_smtp_login_without_a_password_is_a_configuration_error(tmp_path):
    settings = _settings(tmp_path, mail_backend="smtp", smtp_username="nurture")
    with pytest.raises(ConfigurationError, match="NURTURE_SMTP_PASSWORD"):
        mailer_for(settings)


def test_sendgrid_takes_key_host_and_timeout(tmp_path):
    settings = _settings(
        tmp_path,
        mail_backend="sendgrid",
        sendgrid_api_key="SG.secret-key.value",
        sendgrid_base_url="http://127.0.0.1:4010/",
        send_timeout_seconds=2.0,
    )
    mailer = mailer_for(settings)
    assert isinstance(mailer, SendGridMailer)
    assert isinstance(mailer, Mailer)
    assert mailer.base_url == "http://127.0.0.1:4010"
    assert mailer.client.host == "http://127.0.0.1:4010"
    assert mailer.timeout == 2.0
    assert "SG.secret-key.value" not in repr(mailer)


@pytest.mark.parametrize("key", [None, "", "   "])
def test_sendgrid_without_a_key_names_the_setting(tmp_path, key):
    settings = _settings(tmp_path, mail_backend="sendgrid", sendgrid_api_key=key)
    with pytest.raises(ConfigurationError, match="NURTURE_SENDGRID_API_KEY"):
        mailer_for(settings)


def test_the_sendgrid_key_is_read_from_the_environment(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NURTURE_MAIL_BACKEND", "sendgrid")
    monkeypatch.setenv("NURTURE_SENDGRID_API_KEY", "SG.from-env.value")
    with caplog.at_level(logging.DEBUG):
        mailer = mailer_for(_settings(tmp_path))
    assert isinstance(mailer, SendGridMailer)
    assert "SG.from-env.value" not in caplog.text


def test_the_sendgrid_library_is_imported_only_when_chosen():
    code = (
        "import sys, nurture.delivery\n"
        "assert 'sendgrid' not in sys.modules, 'sendgrid imported eagerly'\n"
        "from nurture.delivery import SendGridMailer\n"
        "assert 'sendgrid' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_every_backend_the_settings_offer_can_be_built():
    offered = typing.get_args(Settings.model_fields["mail_backend"].annotation)
    assert sorted(offered) == sorted(MAIL_BACKENDS)


def test_an_unknown_backend_is_a_configuration_error(tmp_path):
    settings = _settings(tmp_path).model_copy(update={"mail_backend": "pigeon"})
    with pytest.raises(ConfigurationError, match="expected outbox, smtp or sendgrid"):
        mailer_for(settings)


def test_the_interface_imports_no_backend():
    tree = ast.parse(Path(mailers.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not {module for module in imported if module.startswith("nurture.delivery")}
