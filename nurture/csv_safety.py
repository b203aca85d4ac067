"""CSV cells a spreadsheet may open safely: the one rule for every CSV file nurture writes.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and some
also do so after a leading tab or carriage return (CSV injection: ``=HYPERLINK(...)`` in a name).
Every such text cell is written with a leading ``'``, which spreadsheets show as text and do not
run. The recommendations export and the rejects files of imports both write through
:func:`escape_formula`.
"""

from __future__ import annotations

__all__ = ["FORMULA_START", "escape_formula"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula."""


def escape_formula(value: object) -> object:
    """``value`` as a CSV cell a spreadsheet will not run: formula-like text gets a leading ``'``.

    Args:
        value: A cell's value; only text is changed.

    Returns:
        The value, prefixed with ``'`` when it is text starting with one of
        :data:`FORMULA_START`; any other value as it is.
    """
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
