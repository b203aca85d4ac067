"""Shares of a whole, and counts beside their shares as reports and artifacts show them."""

from __future__ import annotations

__all__ = ["count_with_share", "share_of"]


def share_of(part: int, whole: int) -> float | None:
    """``part / whole`` rounded to three decimals (a tenth of a percent), None when ``whole`` is 0.

    Args:
        part: The count.
        whole: What it is a share of.

    Returns:
        The share (0..1 when ``part <= whole``).
    """
    return round(part / whole, 3) if whole else None


def count_with_share(count: int, whole: int) -> str:
    """A count and its share of ``whole``: ``500 (25.0%)``; the count alone when ``whole`` is 0.

    Args:
        count: The count.
        whole: What it is a share of.

    Returns:
        The text.
    """
    return f"{count} ({count / whole:.1%})" if whole else str(count)
