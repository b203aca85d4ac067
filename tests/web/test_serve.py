from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from typer.testing import CliRunner

from nurture.cli import app

runner = CliRunner()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path) -> dict[str, Any]:
    """What `nurture serve` hands to uvicorn (which is not started)."""
    calls: dict[str, Any] = {}

    def run(application: Any, **options: Any) -> None:
        calls["app"] = application
        calls.update(options)

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv("NURTURE_DATABASE_URL", database_url)
    monkeypatch.setenv("NURTURE_DATA_DIR", str(tmp_path))
    for name in ("UNSUBSCRIBE_SECRET", "SUPPRESSION_SALT", "SENDGRID_WEBHOOK_PUBLIC_KEY"):
        monkeypatch.delenv(f"NURTURE_{name}", raising=False)
    monkeypatch.delenv("NURTURE_WEB_HOST", raising=False)
    monkeypatch.delenv("NURTURE_WEB_PORT", raising=False)
    return calls


def test_serve_runs_the_app_on_the_configured_address(served):
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert isinstance(served["app"], Starlette)
    assert (served["host"], served["port"]) == ("127.0.0.1", 8000)
    assert "NURTURE_UNSUBSCRIBE_SECRET is the development default" in result.output
    assert "NURTURE_SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in result.output


def test_serve_options(served, monkeypatch):
    monkeypatch.setenv("NURTURE_WEB_PORT", "9000")
    assert runner.invoke(app, ["serve", "--host", "0.0.0.0"]).exit_code == 0
    assert (served["host"], served["port"]) == ("0.0.0.0", 9000)
    assert runner.invoke(app, ["serve", "--port", "8080"]).exit_code == 0
    assert served["port"] == 8080
    assert runner.invoke(app, ["serve", "--port", "0"]).exit_code != 0


def test_serve_is_listed():
    result = runner.invoke(app, ["--help"])
    assert "serve" in result.output
