"""Progress on the command line: a ``rich`` bar on a terminal, lines at intervals otherwise.

:func:`command_progress` chooses. On a terminal each piece of long work shows a bar with
its count, share, rate and time left (a spinner and the count when the total is unknown);
a bar stays on screen when its work is done, so the screen keeps what each stage did.
Elsewhere (a pipe, a file, cron) a line goes to standard error every 30 seconds and one when
the work ends: ``profile: 100 000 members in 12 min 05 s (138 members/s)``.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.progress import Progress as RichBars
from rich.text import Text

from nurture.progress import LineProgress, Progress, ProgressTask, ended_by, format_rate

__all__ = ["RichProgress", "command_progress"]


class _RateColumn(ProgressColumn):
    """``1 200 members/s``: the task's speed in its own unit."""

    def render(self, task: Any) -> Text:
        elapsed = task.finished_time or task.elapsed
        speed = task.finished_speed or task.speed or (task.completed / elapsed if elapsed else 0)
        if not speed:
            return Text("", style="progress.data.speed")
        return Text(format_rate(speed, task.fields["unit"]), style="progress.data.speed")


class _TimeColumn(ProgressColumn):
    """``0:01:23 left`` while the work goes on, ``took 0:02:05`` once it is done."""

    def render(self, task: Any) -> Text:
        if task.finished:
            return Text(f"took {_clock(task.finished_time or task.elapsed)}", "progress.elapsed")
        if task.time_remaining is None:
            return Text(_clock(task.elapsed), "progress.elapsed")
        return Text(f"{_clock(task.time_remaining)} left", "progress.remaining")


def _clock(seconds: float | None) -> str:
    whole = int(seconds or 0)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class _BarTask(ProgressTask):
    def __init__(self, owner: RichProgress, what: str, total: int | None, unit: str) -> None:
        super().__init__(what, total, unit)
        self._owner = owner
        self._id: TaskID = owner._open(self)

    def update(self) -> None:
        self._owner.bars.update(self._id, completed=self.done)

    def close(self) -> None:
        self._owner._close(self._id, self)

    def fail(self, error: BaseException) -> None:
        self._owner._close(self._id, self, ended=ended_by(error))


class RichProgress:
    """Progress bars on a terminal, one row per task; tasks may nest (a file within imports).

    Args:
        console: The terminal to draw on (default: standard error).
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bars = RichBars(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TaskProgressColumn(),
            _RateColumn(),
            _TimeColumn(),
            console=self.console,
        )
        self._open_tasks = 0

    def task(self, what: str, total: int | None = None, unit: str = "items") -> ProgressTask:
        """A bar for ``what``; shown until the command ends."""
        return _BarTask(self, what, total, unit)

    def _open(self, task: ProgressTask) -> TaskID:
        if self._open_tasks == 0:
            self.bars.start()
        self._open_tasks += 1
        # Escaped: a file name with brackets is not markup.
        return self.bars.add_task(escape(task.what), total=task.total, unit=task.unit)

    def _close(self, task_id: TaskID, task: ProgressTask, ended: str | None = None) -> None:
        if ended is not None:  # the row stays, unfinished, saying so
            self.bars.update(task_id, description=f"{escape(task.what)} [red]({ended})[/]")
            self.bars.stop_task(task_id)
        elif task.total is None and task.done == 0:
            self.bars.remove_task(task_id)  # a short step counting nothing: no row left
        else:
            self.bars.update(task_id, total=max(task.done, task.total or 0), completed=task.done)
        self._open_tasks -= 1
        if self._open_tasks == 0:
            self.bars.stop()
            for old in list(self.bars.task_ids):  # drawn for good: the next start is fresh
                self.bars.remove_task(old)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def command_progress(console: Console | None = None) -> Progress:
    """Bars when standard error is a terminal, else lines on standard error."""
    terminal = console or Console(stderr=True)
    if terminal.is_terminal and not terminal.is_dumb_terminal:
        return RichProgress(terminal)
    return LineProgress(_to_stderr)
