"""The JSON Schema of journey files, exported from the pydantic models.

Editors that read ``# yaml-language-server: $schema=journey.schema.json`` use it to complete and
check journey files as marketers type. Regenerate the workspace copy with
``python -m nurture.journeys.schema content/journeys/journey.schema.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from nurture.journeys.models import JourneyDefinition

__all__ = ["SCHEMA_ID", "journey_json_schema", "write_journey_json_schema"]

SCHEMA_ID = "https://nurture.example.org/schemas/journey.schema.json"


def journey_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a journey definition file.

    Returns:
        The schema, with the field titles and descriptions of the models as documentation.
    """
    schema = JourneyDefinition.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }


def write_journey_json_schema(path: Path | str) -> Path:
    """Write the journey JSON Schema to ``path`` (stable formatting, ends with a newline).

    Args:
        path: The file to write.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(journey_json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


if __name__ == "__main__":  # pragma: no cover
    target = sys.argv[1] if len(sys.argv) > 1 else "content/journeys/journey.schema.json"
    print(write_journey_json_schema(target))
