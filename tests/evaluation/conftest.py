"""A small app carrying ``nurture evaluate``, and settings on each test database."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from nurture.cli.evaluate import evaluate_app as evaluate_commands
from nurture.runtime import Runtime
from nurture.settings import Settings
from tests.pipeline_helpers import CONTENT

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evaluation"


def evaluate_app(settings: Settings) -> typer.Typer:
    """The command on a small app whose settings are the test's."""
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = Runtime(settings)
        ctx.call_on_close(ctx.obj.close)

    app.add_typer(evaluate_commands, name="evaluate")
    return app


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        workspace=CONTENT,
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_model="hashing-64",
    )
