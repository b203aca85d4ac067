"""Progress of long work: lines at intervals in logs, the ambient task deep loops advance."""

from __future__ import annotations

import io
import re

import pytest

from nurture.progress import LineProgress, NoProgress, ProgressTask, advance, format_rate


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_intervals_with_count_share_rate_and_time_left() -> None:
    lines: list[str] = []
    clock = Clock()
    progress = LineProgress(lines.append, interval=30.0, clock=clock)

    with progress.task("profile", 100_000, "members") as task:
        clock.now += 10
        task.advance(1_000)  # too soon for a line
        clock.now += 30
        task.advance(19_000)
        clock.now += 5
        task.advance(5_000)  # too soon again
        clock.now += 85
        task.advance(75_000)

    assert lines == [
        "profile: 20 000 of 100 000 members (20%), 500 members/s, about 2 min 40 s left",
        "profile: 100 000 of 100 000 members (100%), 769 members/s",
        "profile: 100 000 members in 2 min 10 s (769 members/s)",
    ]


def test_a_step_that_counts_nothing_is_told_only_when_it_took_a_while() -> None:
    lines: list[str] = []
    clock = Clock()
    progress = LineProgress(lines.append, clock=clock)

    with progress.task("outbox_index"):
        clock.now += 0.2
    with progress.task("segment"):
        clock.now += 12

    assert lines == ["segment: done in 12 s"]


def test_deep_loops_advance_the_task_opened_last() -> None:
    lines: list[str] = []
    clock = Clock()
    progress = LineProgress(lines.append, interval=0.0, clock=clock)

    advance(5)  # nobody watches: nothing happens
    with progress.task("imports", 2, "files") as files:
        with progress.task("import members.csv", None, "records"):
            clock.now += 1
            advance(300)
        files.advance()
        advance(0)

    assert lines[:2] == ["import members.csv: 300 records, 300 records/s", lines[1]]
    assert lines[1].startswith("import members.csv: 300 records in 1.0 s")
    assert lines[2] == "imports: 1 of 2 files (50%), 1.0 files/s, about 1.0 s left"


def test_the_default_watches_nothing_and_rates_read_well() -> None:
    with NoProgress().task("x", 3) as task:
        task.advance(3)
    assert isinstance(task, ProgressTask) and task.done == 3
    assert format_rate(12_345.6, "rows") == "12 346 rows/s"
    assert format_rate(2.25, "emails") == "2.2 emails/s"


def test_unwatched_work_advances_no_task() -> None:
    from nurture.progress import unwatched

    with NoProgress().task("simulate", 48, "simulated hours") as hours:
        with unwatched():
            advance(500)  # the engine's enrollments, inside a simulated hour
        advance(2)

    assert hours.done == 2


def test_work_ended_by_an_error_is_told_failed_with_what_was_done() -> None:
    lines: list[str] = []
    clock = Clock()
    progress = LineProgress(lines.append, interval=600.0, clock=clock)

    with pytest.raises(ValueError), progress.task("import members.csv", 1_000, "records"):
        clock.now += 12
        advance(300)
        raise ValueError("line 301: bad e-mail")
    with pytest.raises(RuntimeError), progress.task("load the embedding model"):
        clock.now += 0.2  # a quiet step: told when it fails, however short
        raise RuntimeError("no model")
    clock.now = 200.0
    with pytest.raises(KeyboardInterrupt), progress.task("profile", None, "members"):
        clock.now += 65
        advance(40)
        raise KeyboardInterrupt

    assert lines == [
        "import members.csv: failed after 12 s, 300 of 1 000 records (30%) done",
        "load the embedding model: failed after 0.2 s",
        "profile: stopped after 1 min 05 s, 40 members done",
    ]


def test_a_failed_bar_stays_unfinished_and_says_so() -> None:
    from rich.console import Console

    from nurture.cli.progress_bar import RichProgress

    screen = io.StringIO()
    progress = RichProgress(Console(file=screen, force_terminal=True, width=120))
    with pytest.raises(ValueError), progress.task("import [weird] members.csv", 10, "records"):
        advance(4)
        raise ValueError("bad record")
    with progress.task("import activity.csv", 2, "records"):
        advance(2)

    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", screen.getvalue())
    assert "import [weird] members.csv (failed)" in shown
    failed = [line for line in shown.splitlines() if "(failed)" in line]
    assert failed and all("4/10 records" in line and "✓" not in line for line in failed)
    assert any("import activity.csv" in line and "✓" in line for line in shown.splitlines())
