"""The segment report: the map of members, segment sizes over time, the lifecycle mix, the cards.

One self-contained HTML page (:mod:`nurture.reports.page`): the charts are drawn by the Vega
libraries inlined in it, so it opens anywhere, offline.
"""

from __future__ import annotations

import colorsys
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from nurture.profiling.layout import QuestionnaireLike
from nurture.reports.cards import SegmentCard, segment_cards
from nurture.reports.charts import (
    Chart,
    lifecycle_mix_chart,
    segment_map_chart,
    segment_sizes_chart,
)
from nurture.reports.page import WrittenReport, render_page, write_report_file
from nurture.reports.segment_history import (
    DEFAULT_HISTORY_RUNS,
    SegmentSize,
    segment_size_history,
)
from nurture.reports.segment_map import DEFAULT_MAP_SAMPLE, MapPoint, segment_map
from nurture.storage.models import SegmentKind

__all__ = ["render_segment_report", "segment_colours", "write_segment_report"]

_PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
"""Tableau 10: distinct colours for the first ten segments."""


def segment_colours(keys: Sequence[str]) -> dict[str, str]:
    """A colour per segment key, in order: Tableau 10, then evenly spread hues.

    Args:
        keys: Segment keys, in the order the report lists them.

    Returns:
        ``{key: "#rrggbb"}``.
    """
    colours: dict[str, str] = {}
    for index, key in enumerate(keys):
        if index < len(_PALETTE):
            colours[key] = _PALETTE[index]
        else:
            hue = (index * 0.618034) % 1.0  # golden ratio: successive hues far apart
            red, green, blue = colorsys.hls_to_rgb(hue, 0.5, 0.55)
            colours[key] = f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"
    return colours


def render_segment_report(
    cards: Sequence[SegmentCard],
    map_points: Sequence[MapPoint],
    *,
    title: str,
    generated_at: dt.datetime,
    history: Sequence[SegmentSize] = (),
) -> str:
    """The segment report as one HTML page: the charts, a legend and every card.

    Args:
        cards: The cards, in the order to show them (:func:`~nurture.reports.segment_cards`).
        map_points: Members on the map (:func:`~nurture.reports.segment_map`); one dot each.
        title: The page title.
        generated_at: When the report was made (shown on the page).
        history: Segment sizes in past runs (:func:`~nurture.reports.segment_size_history`).

    Returns:
        The HTML document; it loads nothing from anywhere.
    """
    return _render(cards, map_points, history, title=title, generated_at=generated_at)[0]


def _render(
    cards: Sequence[SegmentCard],
    map_points: Sequence[MapPoint],
    history: Sequence[SegmentSize],
    *,
    title: str,
    generated_at: dt.datetime,
) -> tuple[str, list[Chart]]:
    """The page and its charts (none without segments)."""
    current = [card.key for card in cards]
    past = [entry.key for entry in history if entry.key not in set(current)]
    colours = segment_colours(current + list(dict.fromkeys(past)))
    charts = (
        [
            segment_map_chart(map_points, cards, colours),
            segment_sizes_chart(history, colours),
            lifecycle_mix_chart(cards),
        ]
        if cards
        else []
    )
    on_map = {point.segment for point in map_points}
    html = render_page(
        "segments.html.j2",
        title=title,
        generated_at=generated_at,
        charts=charts,
        by_name={chart.name: chart for chart in charts},
        cards=cards,
        colours=colours,
        legend=[card for card in cards if card.key in on_map],
        n_members=sum(card.size for card in cards if card.kind == SegmentKind.CLUSTER),
    )
    return html, charts


def write_segment_report(
    session: Session,
    path: Path,
    *,
    now: dt.datetime,
    title: str = "Segments",
    questionnaire: QuestionnaireLike | None = None,
    seed: int = 42,
    sample_size: int = DEFAULT_MAP_SAMPLE,
    history_runs: int = DEFAULT_HISTORY_RUNS,
) -> WrittenReport:
    """Read the segments and write their report to ``path``.

    Args:
        session: Database session (only read).
        path: The HTML file to write (its folder is made if missing).
        now: The time of the report.
        title: The page title.
        questionnaire: The workspace questionnaire: describes rule segments, weighs the map.
        seed: Seed of the map's sample and projection.
        sample_size: Most members on the map.
        history_runs: Segmentation runs the sizes over time cover, the latest ones.

    Returns:
        The file written, with a one-sentence summary.
    """
    cards = segment_cards(session, now, questionnaire=questionnaire)
    points = segment_map(
        session, cards, questionnaire=questionnaire, sample_size=sample_size, seed=seed
    )
    history = segment_size_history(session, runs=history_runs)
    html, charts = _render(cards, points, history, title=title, generated_at=now)
    return WrittenReport(
        path=path.resolve(),
        size_bytes=write_report_file(path, html),
        charts=tuple(chart.name for chart in charts),
        summary=f"{len(cards)} segments, {len(points)} members on the map",
    )
