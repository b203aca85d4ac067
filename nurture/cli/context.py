"""What every command reads from its context: the runtime the ``nurture`` callback built.

The callback of :mod:`nurture.cli.app` builds one :class:`~nurture.runtime.Runtime` per command
from the environment and the common options, and closes it when the command ends. Commands
reach the database, the model and the workspace through it, never on their own.
"""

from __future__ import annotations

import typer

from nurture.runtime import Runtime
from nurture.settings import Settings

__all__ = ["runtime_of", "settings_of"]


def runtime_of(ctx: typer.Context) -> Runtime:
    """The runtime of the command being run."""
    runtime = ctx.find_object(Runtime)
    if runtime is None:  # a command invoked without the nurture callback: a programming error
        raise RuntimeError("the nurture command line callback built no runtime")
    return runtime


def settings_of(ctx: typer.Context) -> Settings:
    """The settings of the command being run."""
    return runtime_of(ctx).settings
