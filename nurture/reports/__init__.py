"""Reports for marketers and operators: segment cards and self-contained HTML pages with charts.

The pages (segments, journeys, delivery, a journey simulation, a journey's results, an
offline evaluation) are single HTML files: their charts are Vega-Lite specifications (built
with Altair) drawn by the Vega libraries inlined in the page, so they open in any browser,
offline. ``write_*_report`` read
the database and write a page; ``render_*_report`` turn data already read into HTML.
"""

from nurture.reports.cards import (
    DistinctiveFeature,
    SegmentCard,
    SegmentDrift,
    mask_email,
    member_display_name,
    segment_cards,
)
from nurture.reports.charts import (
    Chart,
    chart_spec,
    delivery_outcomes_chart,
    funnel_chart,
    lifecycle_mix_chart,
    segment_map_chart,
    segment_sizes_chart,
    simulated_holds_chart,
    simulated_volumes_chart,
)
from nurture.reports.delivery_report import (
    DEFAULT_DELIVERY_DAYS,
    render_delivery_report,
    write_delivery_report,
)
from nurture.reports.evaluation_report import (
    CURVE_TITLES,
    metric_at_k_chart,
    render_evaluation_report,
    write_evaluation_report,
)
from nurture.reports.journey_report import render_journey_report, write_journey_report
from nurture.reports.page import WrittenReport, render_page, write_report_file
from nurture.reports.results_report import (
    conversion_chart,
    render_results_report,
    write_results_report,
)
from nurture.reports.segment_history import (
    DEFAULT_HISTORY_RUNS,
    SegmentSize,
    segment_size_history,
)
from nurture.reports.segment_map import DEFAULT_MAP_SAMPLE, MapPoint, segment_map
from nurture.reports.segment_report import (
    render_segment_report,
    segment_colours,
    write_segment_report,
)
from nurture.reports.segment_table import SegmentRow, segment_table
from nurture.reports.simulation_report import (
    render_simulation_report,
    write_simulation_report,
)
from nurture.reports.vega import vega_javascript, vega_lite_version

__all__ = [
    "CURVE_TITLES",
    "DEFAULT_DELIVERY_DAYS",
    "DEFAULT_HISTORY_RUNS",
    "DEFAULT_MAP_SAMPLE",
    "Chart",
    "DistinctiveFeature",
    "MapPoint",
    "SegmentCard",
    "SegmentDrift",
    "SegmentRow",
    "SegmentSize",
    "WrittenReport",
    "chart_spec",
    "conversion_chart",
    "delivery_outcomes_chart",
    "funnel_chart",
    "lifecycle_mix_chart",
    "mask_email",
    "member_display_name",
    "metric_at_k_chart",
    "render_delivery_report",
    "render_evaluation_report",
    "render_journey_report",
    "render_page",
    "render_results_report",
    "render_segment_report",
    "render_simulation_report",
    "segment_cards",
    "segment_colours",
    "segment_map",
    "segment_map_chart",
    "segment_size_history",
    "segment_sizes_chart",
    "segment_table",
    "simulated_holds_chart",
    "simulated_volumes_chart",
    "vega_javascript",
    "vega_lite_version",
    "write_delivery_report",
    "write_evaluation_report",
    "write_journey_report",
    "write_report_file",
    "write_results_report",
    "write_segment_report",
    "write_simulation_report",
]
