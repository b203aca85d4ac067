"""Progress of long work: how much is done, out of how much, how fast.

A :class:`Progress` opens a :class:`ProgressTask` per piece of long work (``profile``: 100 000
members); the work advances it as it goes. The runtime carries the progress of its run
(:attr:`nurture.runtime.Runtime.progress`): silent by default (:class:`NoProgress`), a
``rich`` bar on a terminal (:mod:`nurture.cli.progress_bar`), a line at intervals in a log
(:class:`LineProgress`: the flows, and the command line when it is not on a terminal).

Deep loops (the batches of an import, the chunks of a journeys pass) report through
:func:`advance`, which moves the task opened last in this thread of work, if any: the work
needs no extra parameter, and costs nothing when nobody watches. Nothing here imports
Prefect or rich.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Protocol

__all__ = [
    "LineProgress",
    "NoProgress",
    "Progress",
    "ProgressTask",
    "advance",
    "describe_rate",
    "ended_by",
    "format_rate",
    "unwatched",
]

DEFAULT_INTERVAL_SECONDS = 30.0
"""Seconds between two progress lines in a log."""
QUIET_SECONDS = 1.0
"""A step that counts nothing is told at its end only if it took this long."""

_current: contextvars.ContextVar[ProgressTask | None] = contextvars.ContextVar(
    "nurture_progress_task", default=None
)


class ProgressTask:
    """One piece of long work being watched; a context manager that closes it.

    Args:
        what: What is being done (``profile``, ``import members.csv``).
        total: How many items there are, None when unknown.
        unit: What an item is (``members``, ``rows``).
    """

    def __init__(self, what: str, total: int | None = None, unit: str = "items") -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0
        self._token: contextvars.Token[ProgressTask | None] | None = None

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more items done."""
        self.done += count
        self.update()

    def update(self) -> None:
        """Show the new count (a subclass's job)."""

    def close(self) -> None:
        """Show the end of the work (a subclass's job)."""

    def fail(self, error: BaseException) -> None:
        """Show that the work ended on ``error``, not done (a subclass's job; default: closed)."""
        self.close()

    def __enter__(self) -> ProgressTask:
        self._token = _current.set(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        if error is None:
            self.close()
        else:
            self.fail(error)


class Progress(Protocol):
    """Watches long work: one task per piece of it."""

    def task(self, what: str, total: int | None = None, unit: str = "items") -> ProgressTask:
        """A task for ``what``: ``total`` items (None when unknown), each a ``unit``."""
        ...


class NoProgress:
    """Watches nothing: the default, and what tests use."""

    def task(self, what: str, total: int | None = None, unit: str = "items") -> ProgressTask:
        """A task that shows nothing."""
        return ProgressTask(what, total, unit)


@contextlib.contextmanager
def unwatched() -> Iterator[None]:
    """In the block, deep loops advance no task: their counts are not the ones watched."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


def advance(count: int = 1) -> None:
    """Count ``count`` items done in the task opened last in this thread of work, if any."""
    task = _current.get()
    if task is not None:
        task.advance(count)


def format_rate(rate: float, unit: str) -> str:
    """``1 200 members/s`` (groups of thousands apart), ``2.5 rows/s`` under ten."""
    text = f"{rate:,.0f}" if rate >= 10 else f"{rate:.1f}"
    return f"{text.replace(',', ' ')} {unit}/s"


def describe_rate(done: int, seconds: float, unit: str) -> str:
    """The rate of ``done`` items in ``seconds`` (:func:`format_rate`); ``-`` at no time."""
    if seconds <= 0:
        return "-"
    return format_rate(done / seconds, unit)


def _duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _count(value: int) -> str:
    return f"{value:,}".replace(",", " ")


class _LineTask(ProgressTask):
    def __init__(
        self,
        what: str,
        total: int | None,
        unit: str,
        *,
        emit: Callable[[str], None],
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(what, total, unit)
        self._emit = emit
        self._interval = interval
        self._clock = clock
        self._started = self._last = clock()

    def _so_far(self) -> str:
        done = _count(self.done)
        if self.total:
            share = min(self.done / self.total, 1.0)
            return f"{done} of {_count(self.total)} {self.unit} ({share:.0%})"
        return f"{done} {self.unit}"

    def update(self) -> None:
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        elapsed = now - self._started
        line = f"{self.what}: {self._so_far()}, {describe_rate(self.done, elapsed, self.unit)}"
        if self.total and 0 < self.done < self.total and elapsed > 0:
            left = (self.total - self.done) * elapsed / self.done
            line += f", about {_duration(left)} left"
        self._emit(line)

    def close(self) -> None:
        elapsed = self._clock() - self._started
        if self.done == 0 and self.total is None:
            if elapsed >= QUIET_SECONDS:  # a step that counts nothing: its time only
                self._emit(f"{self.what}: done in {_duration(elapsed)}")
            return
        self._emit(
            f"{self.what}: {_count(self.done)} {self.unit} in {_duration(elapsed)} "
            f"({describe_rate(self.done, elapsed, self.unit)})"
        )

    def fail(self, error: BaseException) -> None:
        # Always told, however short: the line says which step the error that follows ended.
        line = f"{self.what}: {ended_by(error)} after {_duration(self._clock() - self._started)}"
        if self.done or self.total:
            line += f", {self._so_far()} done"
        self._emit(line)


def ended_by(error: BaseException) -> str:
    """``failed`` for an error, ``stopped`` for an interruption (Ctrl-C, exit)."""
    return "failed" if isinstance(error, Exception) else "stopped"


class LineProgress:
    """Tells progress as lines: one at most every ``interval`` seconds, and one at the end.

    Args:
        emit: Where a line goes (``logger.info``, a print to standard error).
        interval: Seconds between two lines while the work goes on.
        clock: The clock (seconds); tests pass their own.
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        interval: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit = emit
        self.interval = interval
        self.clock = clock

    def task(self, what: str, total: int | None = None, unit: str = "items") -> ProgressTask:
        """A task telling its progress as lines."""
        return _LineTask(
            what, total, unit, emit=self.emit, interval=self.interval, clock=self.clock
        )
