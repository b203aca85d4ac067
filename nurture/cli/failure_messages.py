"""How the ``nurture`` command ends when something goes wrong: a short message, not a traceback.

A failure a person can act on (a setting, the database, the workspace, the model, a file)
prints one or two lines that name the problem and the fix, and the command exits non-zero.
The traceback shows only with ``--debug`` (or ``NURTURE_DEBUG=1``). Nothing here imports the
heavy parts of nurture: the module is loaded by every command, ``--help`` included.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.markup import escape

from nurture.errors import NurtureError

__all__ = ["DEBUG_FLAG", "explain_failure", "run_command", "wants_debug"]

DEBUG_FLAG = "--debug"
DEBUG_HINT = f"run the command again with {DEBUG_FLAG} for the traceback"
INTERRUPTED = 130
"""The exit status of a command stopped by Ctrl-C (128 + SIGINT)."""


def wants_debug(argv: Sequence[str], environ: dict[str, str] | None = None) -> bool:
    """Whether the command line or ``NURTURE_DEBUG`` asks for tracebacks."""
    environ = dict(os.environ) if environ is None else environ
    flag = environ.get("NURTURE_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or DEBUG_FLAG in argv


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else ""


def explain_failure(error: BaseException) -> str:
    """What to tell a person about ``error``: the problem and, when known, the fix.

    nurture's own errors already say both; database errors met after the database was opened
    (the server went away) are translated like those met when opening it; a file the system
    refuses names the file; anything else is a bug, told in one line with how to see more.
    """
    if isinstance(error, NurtureError):
        return str(error)
    from sqlalchemy.exc import DBAPIError

    if isinstance(error, DBAPIError):
        from nurture.storage.database_errors import database_error

        return str(database_error(os.environ.get("NURTURE_DATABASE_URL"), error))
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.strerror or _first_line(error)}: {error.filename}"
    what = _first_line(error)
    return (
        f"unexpected {type(error).__name__}{': ' + what if what else ''}. This is a bug in "
        f"nurture: {DEBUG_HINT}, and report it."
    )


def run_command(
    command: Callable[[], object],
    argv: Sequence[str] | None = None,
    *,
    stderr: Console | None = None,
) -> None:
    """Run ``command`` (the typer app); turn a failure into a short message and an exit status.

    Args:
        command: The command line app, called with no argument (it reads ``sys.argv``).
        argv: The arguments, to look for ``--debug`` (default: ``sys.argv``).
        stderr: Where messages go (default: standard error).

    Raises:
        SystemExit: Always: the command's own status, 1 after a failure, 130 when interrupted.
    """
    argv = sys.argv[1:] if argv is None else argv
    errors = stderr or Console(stderr=True, soft_wrap=True, highlight=False)
    debug = wants_debug(argv)
    try:
        command()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        errors.print("interrupted")
        raise SystemExit(INTERRUPTED) from None
    except Exception as error:  # the one place every failure ends
        if debug:
            traceback.print_exc()
        errors.print(f"[red]error:[/] {escape(explain_failure(error))}")
        raise SystemExit(1) from None
    raise SystemExit(0)
