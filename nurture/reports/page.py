"""What every report page shares: sandboxed templates, the inlined charts, the file written.

Pages are rendered from ``templates/`` in jinja2's immutable sandbox with autoescape on: labels,
terms, journey names and error texts come from members' free text and marketers' files, so every
value is escaped, and chart data reaches the page as JSON escaped for HTML. A page with charts
inlines the Vega libraries (:func:`~nurture.reports.vega.vega_javascript`) and draws each
chart when it opens: it loads nothing from anywhere.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import PackageLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from nurture.reports.charts import Chart
from nurture.reports.vega import vega_javascript

__all__ = ["WrittenReport", "render_page", "write_report_file"]

_environment = ImmutableSandboxedEnvironment(
    loader=PackageLoader("nurture.reports", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class WrittenReport:
    """A report page written to a file.

    Attributes:
        path: The file (absolute).
        size_bytes: Its size.
        charts: The names of its charts, in page order.
        summary: What it shows, in a sentence (``4 segments, 60 members on the map``).
    """

    path: Path
    size_bytes: int
    charts: tuple[str, ...]
    summary: str


def render_page(
    template: str,
    *,
    title: str,
    generated_at: dt.datetime,
    charts: Sequence[Chart] = (),
    **context: Any,
) -> str:
    """Render a report page: its template, with the Vega libraries when it has charts.

    Args:
        template: The template's file name in ``templates/``.
        title: The page title.
        generated_at: When the report was made (shown on the page).
        charts: Every chart the template shows (with the ``figure`` macro).
        **context: The template's other values.

    Returns:
        The HTML document.
    """
    return _environment.get_template(template).render(
        title=title,
        generated_at=generated_at.strftime("%Y-%m-%d %H:%M %Z").strip(),
        charts=list(charts),
        vega_javascript=Markup(vega_javascript()) if charts else "",
        **context,
    )


def write_report_file(path: Path, html: str) -> int:
    """Write a page, its folder made if missing; a reader never sees a half-written file.

    Args:
        path: The file.
        html: The page.

    Returns:
        Bytes written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = html.encode("utf-8")
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(path)
    return len(data)
