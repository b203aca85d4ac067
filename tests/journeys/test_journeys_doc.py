"""Every YAML example of docs/journeys.md is valid: complete journeys and sending rules.

A ```yaml block with a top-level ``id:`` is a journey: it must validate as a
``JourneyDefinition`` and pass the loader's graph checks. A block starting with ``budget:`` or
``quiet_hours:`` is a ``sending.yaml`` and must validate as ``SendingRules``. Any other YAML
block is an error, so no example escapes the checks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from nurture.journeys import load_journey
from nurture.journeys.models import STEP_KINDS, TRIGGER_KINDS, JourneyDefinition
from nurture.journeys.policy import SendingRules

DOC = Path(__file__).resolve().parents[2] / "docs" / "journeys.md"
_BLOCK = re.compile(r"^```yaml[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[int, str]]:
    text = DOC.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1)) for match in _BLOCK.finditer(text)
    ]


def _first_key(source: str) -> str | None:
    for line in source.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped.split(":", 1)[0] if not line[0].isspace() else None
    return None


def _is_journey(source: str) -> bool:
    return re.search(r"^id:", source, re.MULTILINE) is not None


def _is_sending_rules(source: str) -> bool:
    return _first_key(source) in ("budget", "quiet_hours")


BLOCKS = _blocks()
JOURNEYS = [(line, source) for line, source in BLOCKS if _is_journey(source)]
RULES = [(line, source) for line, source in BLOCKS if _is_sending_rules(source)]


def test_the_doc_has_examples() -> None:
    assert len(JOURNEYS) >= 15
    assert RULES


@pytest.mark.parametrize(("line", "source"), BLOCKS, ids=[f"line {line}" for line, _ in BLOCKS])
def test_every_yaml_block_is_a_journey_or_sending_rules(line: int, source: str) -> None:
    assert _is_journey(source) or _is_sending_rules(source), (
        f"docs/journeys.md line {line}: a yaml block must be a complete journey (id: ...) or "
        "sending rules (budget: / quiet_hours:)"
    )


@pytest.mark.parametrize(("line", "source"), JOURNEYS, ids=[f"line {line}" for line, _ in JOURNEYS])
def test_journey_example_is_valid(line: int, source: str, tmp_path: Path) -> None:
    data = yaml.safe_load(source)
    definition = JourneyDefinition.model_validate(data)
    path = tmp_path / f"{definition.id}.yaml"
    path.write_text(source, encoding="utf-8")
    loaded = load_journey(path, templates_dir=None)
    assert loaded.definition_hash == definition.definition_hash


@pytest.mark.parametrize(("line", "source"), RULES, ids=[f"line {line}" for line, _ in RULES])
def test_sending_rules_example_is_valid(line: int, source: str) -> None:
    SendingRules.model_validate(yaml.safe_load(source))


def test_journey_ids_are_unique() -> None:
    ids = [yaml.safe_load(source)["id"] for _, source in JOURNEYS]
    assert len(ids) == len(set(ids))


def test_every_trigger_and_step_kind_has_an_example() -> None:
    definitions = [JourneyDefinition.model_validate(yaml.safe_load(s)) for _, s in JOURNEYS]
    triggers = {definition.trigger.type for definition in definitions}
    steps = {step.type for definition in definitions for step in definition.steps}
    assert triggers == set(TRIGGER_KINDS)
    assert steps == set(STEP_KINDS)


def test_every_journey_feature_has_an_example() -> None:
    data: list[dict[str, Any]] = [yaml.safe_load(source) for _, source in JOURNEYS]
    definitions = [JourneyDefinition.model_validate(item) for item in data]
    steps = [step for definition in definitions for step in definition.steps]
    conditions = [
        getattr(case, "when", "") for step in steps for case in getattr(step, "cases", [])
    ]
    conditions += [d.audience or "" for d in definitions]
    conditions += [d.goal.condition or "" for d in definitions if d.goal]
    for name in (
        "answers",
        "member.attributes",
        "segments",
        "lifecycle",
        "language",
        "opened(",
        "clicked(",
        "activity",
    ):
        assert any(name in condition for condition in conditions), name
    waits = [step for step in steps if step.type == "wait"]
    assert any(step.until and step.until.weekday for step in waits)
    assert any(step.until and step.duration for step in waits)
    sends = [step for step in steps if step.type == "send"]
    assert any(step.slots for step in sends)
    assert any(step.content.kinds or step.content.tags for step in sends)
    assert any(slot.order == "upcoming" for step in sends for slot in step.slots.values())
    assert any(step.over_budget for step in sends)
    assert any(d.goal and d.goal.events for d in definitions)
    assert any(d.goal and d.goal.condition for d in definitions)
    assert any(d.cooldown for d in definitions)
    assert any(d.reentry == "once" for d in definitions)
    assert any(d.transactional for d in definitions)
    assert {d.category for d in definitions} == {"care", "promotion"}
    assert any(d.over_budget == "skip" for d in definitions)
