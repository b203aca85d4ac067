"""The ``nurture`` command line (typer)."""

from nurture.cli.app import app, main

__all__ = ["app", "main"]
