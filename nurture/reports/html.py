"""The segment report: one self-contained HTML page (inline CSS and SVG, no script).

The page is rendered from ``templates/segments.html.j2`` in jinja2's immutable sandbox with
autoescape on: labels, terms and descriptions come from members' free text and marketers' edits,
so every value is escaped.
"""

from __future__ import annotations

import colorsys
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import PackageLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from nurture.reports.cards import SegmentCard
from nurture.reports.segment_map import MapPoint
from nurture.storage.models import LifecycleStage, SegmentKind

__all__ = ["MAP_HEIGHT", "MAP_WIDTH", "render_segment_report", "segment_colours"]

MAP_WIDTH = 640
MAP_HEIGHT = 420
_MAP_MARGIN = 12

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

_STAGE_COLOURS = dict(
    zip(
        LifecycleStage,
        ("#9ecae1", "#6baed6", "#31a354", "#238b45", "#006d2c", "#fd8d3c", "#bdbdbd"),
        strict=True,
    )
)

_environment = ImmutableSandboxedEnvironment(
    loader=PackageLoader("nurture.reports", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


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


@dataclass(frozen=True)
class _Dot:
    cx: str
    cy: str
    colour: str


def _dots(points: Sequence[MapPoint], colours: dict[str, str]) -> list[_Dot]:
    """Points in SVG coordinates: both axes scaled alike (distances keep their meaning)."""
    if not points:
        return []
    xs = [p.x for p in points]
    ys = [p.y for p in points]
    span_x = max(xs) - min(xs)
    span_y = max(ys) - min(ys)
    inner_w, inner_h = MAP_WIDTH - 2 * _MAP_MARGIN, MAP_HEIGHT - 2 * _MAP_MARGIN
    scale = min(inner_w / span_x if span_x else inner_w, inner_h / span_y if span_y else inner_h)
    mid_x, mid_y = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    return [
        _Dot(
            cx=f"{MAP_WIDTH / 2 + (p.x - mid_x) * scale:.1f}",
            cy=f"{MAP_HEIGHT / 2 - (p.y - mid_y) * scale:.1f}",  # SVG's y axis points down
            colour=colours.get(p.segment, "#888888"),
        )
        for p in points
    ]


def render_segment_report(
    cards: Sequence[SegmentCard],
    map_points: Sequence[MapPoint],
    *,
    title: str,
    generated_at: dt.datetime,
) -> str:
    """The segment report as one HTML page: a map of members, a legend and every card.

    Args:
        cards: The cards, in the order to show them (:func:`~nurture.reports.segment_cards`).
        map_points: Members on the map (:func:`~nurture.reports.segment_map`); one SVG circle
            each.
        title: The page title.
        generated_at: When the report was made (shown on the page).

    Returns:
        The HTML document; it loads nothing from anywhere.
    """
    colours = segment_colours([card.key for card in cards])
    on_map = {point.segment for point in map_points}
    context: dict[str, Any] = {
        "title": title,
        "generated_at": generated_at.strftime("%Y-%m-%d %H:%M %Z").strip(),
        "cards": cards,
        "colours": colours,
        "legend": [card for card in cards if card.key in on_map],
        "dots": _dots(map_points, colours),
        "map_width": MAP_WIDTH,
        "map_height": MAP_HEIGHT,
        "stage_colours": _STAGE_COLOURS,
        "n_points": len(map_points),
        "n_members": sum(card.size for card in cards if card.kind == SegmentKind.CLUSTER),
    }
    return _environment.get_template("segments.html.j2").render(context)
