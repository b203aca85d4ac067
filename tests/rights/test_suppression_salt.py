"""The suppression salt: one setting, read from the environment, never empty, never shown."""

from __future__ import annotations

import pytest

from nurture.delivery import suppression_hash
from nurture.errors import ConfigurationError
from nurture.runtime import settings_from
from nurture.settings import DEVELOPMENT_SECRET, Settings


def test_the_salt_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_SUPPRESSION_SALT", "from-env")
    settings = Settings()
    assert settings.suppression_salt.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings)


def test_the_default_salt_is_the_development_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NURTURE_SUPPRESSION_SALT", raising=False)
    assert Settings().suppression_salt.get_secret_value() == DEVELOPMENT_SECRET
    assert "production" in (Settings.model_fields["suppression_salt"].description or "")


def test_an_empty_salt_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_SUPPRESSION_SALT", "")
    with pytest.raises(ConfigurationError, match="NURTURE_SUPPRESSION_SALT"):
        settings_from()
    with pytest.raises(ConfigurationError, match="salt"):
        suppression_hash("a@example.org", "")
