from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest


def _load_fake_questionnaire() -> Any:
    path = Path(__file__).resolve().parents[1] / "ingest" / "ingest_helpers.py"
    spec = importlib.util.spec_from_file_location("demo_ingest_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FakeQuestionnaire()


@pytest.fixture
def questionnaire() -> Any:
    """The fake questionnaire of the import tests (options of docs/architecture.md)."""
    return _load_fake_questionnaire()
