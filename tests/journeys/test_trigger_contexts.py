"""One typed context per trigger kind, each with the sample templates are checked against."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nurture.journeys import TRIGGER_CONTEXTS, trigger_sample
from nurture.journeys.models import TRIGGER_KINDS
from nurture.journeys.triggers import MilestoneContext, ScheduleContext
from nurture.workspace.template_samples import sample_trigger_contexts


def test_every_trigger_kind_has_a_context() -> None:
    assert set(TRIGGER_CONTEXTS) == set(TRIGGER_KINDS)
    for kind, context in TRIGGER_CONTEXTS.items():
        assert context.kind == kind


@pytest.mark.parametrize("kind", sorted(TRIGGER_KINDS))
def test_each_sample_is_stored_as_json_and_reads_back(kind: str) -> None:
    sample = trigger_sample(kind)
    stored = sample.to_stored()
    assert type(sample).model_validate(stored) == sample
    # Template validation renders every template with exactly this sample.
    assert stored == sample_trigger_contexts()[kind]


def test_moments_are_stored_as_isoformat_writes_them() -> None:
    stored = ScheduleContext.sample().to_stored()
    assert stored == {
        "run_at": "2026-11-01T08:00:00+00:00",
        "period_start": "2026-10-01T08:00:00+00:00",
    }


def test_a_context_refuses_unknown_fields_and_an_unknown_kind_is_named() -> None:
    with pytest.raises(ValidationError):
        MilestoneContext.model_validate({"threshold": 100, "member_count": 104, "typo": 1})
    with pytest.raises(KeyError, match="community_milestone"):
        trigger_sample("milestone")
