"""The layering the design asks for: nurture/ is pure domain code, Prefect stays in flows/."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_the_library_never_imports_prefect_outside_the_cli() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "nurture").rglob("*.py")
        if "cli" not in path.relative_to(ROOT / "nurture").parts
        and any(module.split(".")[0] == "prefect" for module in _imported_modules(path))
    ]
    assert offenders == []


def test_flows_reach_the_library_only_through_its_pipeline_stages() -> None:
    for path in (ROOT / "flows").rglob("*.py"):
        library = {m for m in _imported_modules(path) if m.split(".")[0] == "nurture"}
        assert library <= {"nurture", "nurture.pipeline", "nurture.delivery"}, path
