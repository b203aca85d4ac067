"""No two modules of nurture/ share a name without a reason written here.

Two ``status.py`` or two ``engine.py`` make tracebacks, editor tabs and a grep ambiguous, and
invite putting a new function in the wrong one. A module named like another needs an entry in
``SHARED_NAMES`` with the reason; a new duplicate fails this test.
"""

from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nurture"

ANY_NUMBER = "__init__.py"
"""Every package has one."""

SHARED_NAMES: dict[str, tuple[frozenset[str], str]] = {
    "app.py": (
        frozenset({"nurture/cli/app.py", "nurture/web/app.py"}),
        "each front end's application object (the Typer app, the ASGI app), named by convention",
    ),
    "models.py": (
        frozenset({"nurture/journeys/models.py", "nurture/storage/models.py"}),
        "each layer's typed models: storage's ORM tables, the journey files' pydantic schema",
    ),
}
"""Basenames several modules may share: ``{name: (the modules, why)}``."""


def _modules_by_name() -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        found[path.name].add(path.relative_to(ROOT).as_posix())
    return found


def test_no_two_modules_share_a_name_without_a_reason() -> None:
    unexplained = {
        name: sorted(paths)
        for name, paths in _modules_by_name().items()
        if len(paths) > 1
        and name != ANY_NUMBER
        and paths != SHARED_NAMES.get(name, (frozenset(), ""))[0]
    }
    assert unexplained == {}, (
        "modules sharing a name: rename one, or add it to SHARED_NAMES with the reason"
    )


def test_every_shared_name_listed_is_still_shared() -> None:
    found = _modules_by_name()
    stale = {name for name, (paths, _) in SHARED_NAMES.items() if found.get(name) != paths}
    assert stale == set(), "SHARED_NAMES lists modules that no longer share the name"
