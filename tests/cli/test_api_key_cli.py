"""`nurture api-key`: make a key (shown once), list keys, revoke one."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine
from typer.testing import CliRunner

from nurture.cli import app
from nurture.storage import open_session
from nurture.web.api_keys import find_api_key

runner = CliRunner()


def _nurture(database_url: str, tmp_path: Path, *args: str):
    env = {"NURTURE_DATABASE_URL": database_url, "NURTURE_DATA_DIR": str(tmp_path)}
    return runner.invoke(app, list(args), env=env, terminal_width=200)


def test_create_list_revoke(engine: Engine, database_url: str, tmp_path: Path):
    made = _nurture(database_url, tmp_path, "api-key", "create", "platform", "--scope", "read")
    assert made.exit_code == 0, made.output
    key = re.search(r"^(nk_\S+)$", made.output, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert "shown only now" in made.output
    prefix = key.split("_")[1]
    listed = _nurture(database_url, tmp_path, "api-key", "list")
    assert prefix in listed.output and "platform" in listed.output and "live" in listed.output
    assert key not in listed.output
    with open_session(engine) as session:
        assert find_api_key(session, key) is not None
    revoked = _nurture(database_url, tmp_path, "api-key", "revoke", prefix)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    with open_session(engine) as session:
        assert find_api_key(session, key) is None
    assert "revoked" in _nurture(database_url, tmp_path, "api-key", "list").output
    unknown = _nurture(database_url, tmp_path, "api-key", "revoke", "feedfeedfeed")
    assert unknown.exit_code == 2 and "no API key" in unknown.output
    bad_name = _nurture(database_url, tmp_path, "api-key", "create", "")
    assert bad_name.exit_code == 2
