"""Reading a report page as the tests do: its charts' specifications, and what it would load."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

_FIGURE = re.compile(
    r'<figure class="chart" id="([a-z0-9_-]+)" data-chart="\1">.*?'
    r'<script type="application/json" class="vega-spec">(.*?)</script>',
    re.DOTALL,
)


def chart_specs(html: str) -> dict[str, dict[str, Any]]:
    """``{chart name: its Vega-Lite specification}``, in page order."""
    return {name: json.loads(spec) for name, spec in _FIGURE.findall(html)}


def chart_rows(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a chart's one dataset."""
    (rows,) = spec["datasets"].values()
    return rows


class PageChecker(HTMLParser):
    """Collects tags and scripts; fails on anything that loads from elsewhere or runs a handler."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.script_types: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        assert tag not in ("link", "iframe", "img", "object", "embed"), tag
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href", "srcset", "action"):
                raise AssertionError(f"{tag} loads {value}")
        if tag == "script":
            self.script_types.append(dict(attrs).get("type"))


def check_page(html: str, charts: int) -> PageChecker:
    """Check a page loads nothing and holds ``charts`` chart specifications and, with any, the
    two inline scripts (the Vega libraries, then the code that draws each chart)."""
    checker = PageChecker()
    checker.feed(html)
    specs = ["application/json"] * charts
    assert checker.script_types == ([*specs, None, None] if charts else [])
    assert "url(" not in without_library(html)  # no style loads anything
    return checker


def without_library(html: str) -> str:
    """The page without the inlined Vega libraries (their code has ``<img`` and URLs in it)."""
    before, _, after = html.partition("<script>\n")
    return before + after.partition("</script>")[2]
