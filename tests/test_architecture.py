"""The layering the design asks for: one direction of imports, Prefect only in flows/.

nurture/ (its command line included) never imports flows/ or Prefect: the command line reaches
an orchestrator by name (``nurture.orchestrators`` entry points). flows/ reaches the library
only through its narrow surface: the runtime, the declared stages and how they run.
"""

import ast
import tomllib
from pathlib import Path

from nurture.orchestration import ORCHESTRATOR_ENTRY_POINTS

ROOT = Path(__file__).resolve().parents[1]

FLOWS_MAY_IMPORT = {
    "nurture.runtime",
    "nurture.stages",
    "nurture.orchestration",
    "nurture.settings",
    "nurture.outcomes",
    "nurture.progress",
}
"""The library's surface for flows/: build a runtime, walk the stage lists, combine summaries,
say how a run went and report its progress."""

ORCHESTRATOR_PACKAGES = {"flows", "prefect", "prefect_dask", "dask", "distributed"}


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            # ``from nurture import stages`` imports the module nurture.stages
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_the_library_and_its_command_line_never_import_flows_or_prefect() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            module
            for module in _imported_modules(path)
            if module.split(".")[0] in ORCHESTRATOR_PACKAGES
        )
        for path in (ROOT / "nurture").rglob("*.py")
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_flows_reach_the_library_only_through_the_runtime_and_the_stages() -> None:
    for path in (ROOT / "flows").rglob("*.py"):
        library = {
            module
            for module in _imported_modules(path)
            if module.split(".")[0] == "nurture" and module in _NURTURE_MODULES
        }
        assert library <= FLOWS_MAY_IMPORT, path


def test_the_command_line_finds_prefect_by_its_entry_point() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = pyproject["project"]["entry-points"][ORCHESTRATOR_ENTRY_POINTS]
    assert declared == {"prefect": "flows.orchestrator:PrefectOrchestrator"}


_NURTURE_MODULES = {
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for path in (ROOT / "nurture").rglob("*.py")
}
