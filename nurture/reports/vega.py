"""The JavaScript that draws the reports' charts: Vega, Vega-Lite and Vega-Embed, inlined.

The charts are Vega-Lite specifications (built with Altair in :mod:`nurture.reports.charts`);
the browser draws them with the Vega libraries that the ``vl-convert-python`` package ships.
Each page carries the libraries inline, so a report opens with the network off.

Bundling the libraries takes vl-convert a few seconds, so the bundle is kept in memory and in
the user's cache directory (``$XDG_CACHE_HOME/nurture``, else ``~/.cache/nurture``), one file
per vl-convert and Vega-Lite version; an unwritable cache only costs the seconds again.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
from pathlib import Path

__all__ = ["vega_javascript", "vega_lite_version"]

_CLOSING_TAG = re.compile(r"</(script)", re.IGNORECASE)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nurture"


def vega_lite_version() -> str:
    """The Vega-Lite version of Altair's specifications (``6.4``): the library inlined is the same.

    Returns:
        Major and minor version.
    """
    import altair

    return ".".join(altair.SCHEMA_VERSION.removeprefix("v").split(".")[:2])


def _inline_safe(javascript: str) -> str:
    """The script with nothing that would end an inline ``<script>`` element early."""
    return _CLOSING_TAG.sub(r"<\\/\1", javascript).replace("<!--", "<\\!--")


@functools.cache
def vega_javascript() -> str:
    """The Vega, Vega-Lite and Vega-Embed libraries as one script for an inline ``<script>``.

    The script defines ``vegaEmbed`` (with Vega-Tooltip) on ``window``; it loads nothing.

    Returns:
        The JavaScript source (about 900 kB).
    """
    import vl_convert

    version = vega_lite_version()
    cached = _cache_dir() / f"vega-embed-{_vl_convert_version()}-vl{version}.js"
    try:
        return cached.read_text(encoding="utf-8")
    except OSError:
        pass
    # the stubs declare ``snippet`` required; ``None`` is the library's default bundle
    javascript = _inline_safe(vl_convert.javascript_bundle(None, vl_version=version))  # type: ignore[arg-type]
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(javascript, encoding="utf-8")
        partial.replace(cached)  # atomic: a concurrent reader sees the whole file or none
    except OSError:
        pass
    return javascript


def _vl_convert_version() -> str:
    return importlib.metadata.version("vl-convert-python")
