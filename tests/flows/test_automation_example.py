"""The documented Prefect automation is one Prefect accepts, and it fires on nurture's states."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.events.schemas.automations import AutomationCore, EventTrigger

from nurture.outcomes import NEEDS_ATTENTION
from nurture.stages import DELIVER, NIGHTLY

EXAMPLE = (
    Path(__file__).resolve().parents[2]
    / "examples"
    / "automations"
    / "nurture-needs-attention.yaml"
)


def test_the_example_automation_is_valid_for_prefect() -> None:
    automation = AutomationCore.model_validate(yaml.safe_load(EXAMPLE.read_text("utf-8")))

    trigger = automation.trigger
    assert isinstance(trigger, EventTrigger)
    # Prefect names a flow run's state change event after the state: prefect.flow-run.<name>.
    assert trigger.expect == {
        "prefect.flow-run.Failed",
        "prefect.flow-run.Crashed",
        f"prefect.flow-run.{NEEDS_ATTENTION}",
    }
    [related] = (
        trigger.match_related
        if isinstance(trigger.match_related, list)
        else [trigger.match_related]
    )
    names = related.get("prefect.resource.name")
    assert sorted(names if isinstance(names, list) else [names]) == sorted(
        [NIGHTLY.name, DELIVER.name]
    )
    [action] = automation.actions
    assert action.type == "send-notification"
    assert "{{ flow_run.state.message }}" in action.body  # type: ignore[union-attr]
