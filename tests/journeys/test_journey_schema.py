"""The exported JSON Schema documents the models and the workspace copy is up to date."""

from __future__ import annotations

import json
from pathlib import Path

from nurture.journeys import journey_json_schema, write_journey_json_schema

WORKSPACE_SCHEMA = Path(__file__).parents[2] / "content" / "journeys" / "journey.schema.json"


def test_schema_documents_fields_and_step_kinds() -> None:
    schema = journey_json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {"id", "name", "category", "trigger", "steps"}
    assert schema["properties"]["steps"]["description"]
    steps = schema["properties"]["steps"]["items"]
    assert set(steps["discriminator"]["mapping"]) == {"send", "wait", "branch", "split", "exit"}
    assert schema["$defs"]["SendStep"]["properties"]["template"]["description"]


def test_workspace_schema_file_is_current(tmp_path: Path) -> None:
    written = write_journey_json_schema(tmp_path / "journey.schema.json")
    assert json.loads(WORKSPACE_SCHEMA.read_text(encoding="utf-8")) == json.loads(
        written.read_text(encoding="utf-8")
    ), "regenerate with: python -m nurture.journeys.schema content/journeys/journey.schema.json"
