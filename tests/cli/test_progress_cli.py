"""Long commands show progress: a rich bar on a terminal (a real pty), lines otherwise."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
N_MEMBERS = 1_500


@pytest.fixture
def members(tmp_path: Path) -> Path:
    path = tmp_path / "members.csv"
    rows = [f"m{n}@example.org,Member {n},en" for n in range(N_MEMBERS)]
    path.write_text("email,first_name,language\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _command(tmp_path: Path, members: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from nurture.cli import main; main()",
        "--workspace",
        str(ROOT / "content"),
        "--data-dir",
        str(tmp_path / "data"),
        "import",
        "members",
        str(members),
    ]


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.update(PYTHONPATH=str(ROOT), TERM="xterm-256color", COLUMNS="140")
    env.pop("CI", None)
    env.pop("NO_COLOR", None)
    return env


def test_a_terminal_shows_a_bar_with_counts_and_rate(tmp_path: Path, members: Path) -> None:
    main, child = pty.openpty()
    process = subprocess.Popen(
        _command(tmp_path, members),
        stdin=child,
        stdout=child,
        stderr=child,
        env=_environment(),
        cwd=tmp_path,
    )
    os.close(child)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert process.wait(timeout=120) == 0
    screen = ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))

    assert "import members.csv" in screen
    assert f"{N_MEMBERS}/{N_MEMBERS} records" in screen
    assert "100%" in screen
    assert re.search(r"[\d ]+ records/s", screen), screen
    assert "━" in screen  # the bar itself
    assert f"members from {members}: {N_MEMBERS} read" in screen


def test_without_a_terminal_progress_comes_as_lines(tmp_path: Path, members: Path) -> None:
    done = subprocess.run(
        _command(tmp_path, members),
        capture_output=True,
        text=True,
        env=_environment(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    count = f"{N_MEMBERS:,}".replace(",", " ")
    line = rf"^import members\.csv: {count} records in [\d.]+ (s|min) \([\d .]+ records/s\)$"
    assert re.search(line, done.stderr, re.MULTILINE), done.stderr
    assert "━" not in done.stderr + done.stdout
