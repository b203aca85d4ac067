"""The layering the design asks for: one direction of imports, Prefect only in flows/.

Inside nurture/, each package sits in :data:`LAYERS` and imports only packages listed before it
(docs/architecture.md draws it): no import circle, and a new package must be placed. nurture/
(its command line included) never imports flows/ or Prefect: the command line reaches an
orchestrator by name (``nurture.orchestrators`` entry points). flows/ reaches the library only
through its narrow surface: the runtime, the declared stages and how they run.
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

LAYERS: list[tuple[str, list[str]]] = [
    (
        "foundation",
        [
            "errors",
            "settings",
            "chunks",
            "languages",
            "csv_safety",
            "storage",
            "marketer_files",
            "embedding",
            "sentences",
            "progress",
            "outcomes",
        ],
    ),
    (
        "domain",
        [
            "ingest",
            "demo",
            "profiling",
            "expressions",
            "segmentation",
            "delivery",
            "recommend",
            "journeys",
            "rights",
        ],
    ),
    ("composition", ["workspace", "operations", "reports"]),
    ("application", ["runtime", "stages", "orchestration", "evaluation"]),
    ("front ends", ["web", "cli"]),
]
"""nurture's packages (and top-level modules), lowest first: each imports only earlier ones."""

ORDER = [name for _, names in LAYERS for name in names]

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


def _part_of(module: str) -> str:
    """The package (or top-level module) of nurture that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_package_of_nurture_has_its_place_in_the_layers() -> None:
    parts = {_part_of(module) for module in _NURTURE_MODULES} - {""}
    assert sorted(parts - set(ORDER)) == [], "place the new package in LAYERS"
    assert sorted(set(ORDER) - parts) == [], "LAYERS names a package that no longer exists"
    assert len(ORDER) == len(set(ORDER))


def test_imports_inside_nurture_point_one_way_down_the_layers() -> None:
    upward: list[str] = []
    for path in (ROOT / "nurture").rglob("*.py"):
        if "migrations" in path.parts:
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        here = _part_of(module)
        if not here:
            continue
        for imported in _imported_modules(path):
            there = _part_of(imported) if imported.startswith("nurture.") else ""
            if (
                there
                and there != here
                and there in ORDER
                and ORDER.index(there) > ORDER.index(here)
            ):
                upward.append(f"{module} imports {imported} ({there} sits above {here})")
    assert sorted(set(upward)) == []
