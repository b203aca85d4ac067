"""Every module of nurture/ says what it offers, accurately, in ``__all__``.

``__all__`` is what the docs, ``from x import *`` and readers trust as a module's public face:
each name in it must exist, appear once, and every public class or function the module defines
must be listed (or renamed with a leading underscore). CLI command functions are exempt: the
Typer application that registers them is their public face.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest
import typer

import nurture

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(nurture.__path__, "nurture.")
    if ".migrations" not in info.name
)


def _typer_commands(module: ModuleType) -> set[str]:
    """Names of the functions the module's Typer applications register as commands."""
    names: set[str] = set()
    for value in vars(module).values():
        if isinstance(value, typer.Typer):
            names.update(
                command.callback.__name__
                for command in value.registered_commands
                if command.callback is not None
            )
            if value.registered_callback and value.registered_callback.callback:
                names.add(value.registered_callback.callback.__name__)
    return names


@pytest.mark.parametrize("name", MODULES)
def test_all_is_accurate(name: str) -> None:
    module = importlib.import_module(name)
    listed = getattr(module, "__all__", None)
    assert listed is not None, f"{name} declares no __all__"
    assert len(listed) == len(set(listed)), f"{name}.__all__ names something twice"
    assert [n for n in listed if not hasattr(module, n)] == [], f"{name}.__all__ names ghosts"
    defined = {
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == name
    }
    unlisted = sorted(defined - set(listed) - _typer_commands(module))
    assert unlisted == [], f"{name} defines public {unlisted} without listing them in __all__"


def test_every_module_is_checked() -> None:
    assert "nurture.runtime" in MODULES and "nurture.journeys.engine" in MODULES
