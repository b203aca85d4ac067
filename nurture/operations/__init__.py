"""Operations: what an operator reads about a running nurture, as small JSON-ready summaries.

Every function here reads the database through a ``Session`` and changes nothing (or decides on
what was read, as ``attention_items`` does); each returns frozen dataclasses whose
``dataclasses.asdict`` is JSON-ready (times as ISO 8601 strings). The
flows publish them as Prefect artifacts; ``nurture status`` prints them.
"""

from nurture.operations.attention import (
    AttentionFacts,
    AttentionThresholds,
    attention_items,
    load_attention_facts,
    operator_attention,
)
from nurture.operations.coverage import CoverageSummary, match_coverage
from nurture.operations.delivery import (
    DeliveryDay,
    DeliveryReport,
    ReasonCount,
    SuppressionSummary,
    delivery_by_day,
    delivery_report,
    normalise_error,
    suppression_summary,
)
from nurture.operations.flow_runs import FlowRunSummary, flow_run_summary
from nurture.operations.funnel import (
    FunnelRow,
    FunnelStage,
    JourneyFunnel,
    journey_funnel,
    journey_funnels,
)
from nurture.operations.shares import count_with_share, share_of
from nurture.operations.status_report import StatusReport, status_report

__all__ = [
    "AttentionFacts",
    "AttentionThresholds",
    "CoverageSummary",
    "DeliveryDay",
    "DeliveryReport",
    "FlowRunSummary",
    "FunnelRow",
    "FunnelStage",
    "JourneyFunnel",
    "ReasonCount",
    "StatusReport",
    "SuppressionSummary",
    "attention_items",
    "count_with_share",
    "delivery_by_day",
    "delivery_report",
    "flow_run_summary",
    "journey_funnel",
    "journey_funnels",
    "load_attention_facts",
    "match_coverage",
    "normalise_error",
    "operator_attention",
    "share_of",
    "status_report",
    "suppression_summary",
]
