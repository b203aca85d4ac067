"""Reading JSON columns in bulk: each distinct stored text decoded once.

Answers repeat: thousands of members chose the same option, and decoding each row's value
costs more than the query that read it. Read the column as text (``cast(column, Text)``) and
decode it with a :class:`JsonTexts`. Any other value stored as text that repeats (a status
read as its stored text) is made once per distinct text by a :class:`MadeOnce`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Column, Dialect

__all__ = ["JsonTexts", "MadeOnce", "stored_values"]

T = TypeVar("T")


class MadeOnce(dict[str, T]):
    """Values made of stored texts, each distinct text made once: ``made[text]``.

    Args:
        make: Makes the value of a text (a column type's result processor, an enum).
    """

    def __init__(self, make: Callable[[str], T]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, text: str) -> T:
        value = self[text] = self._make(text)
        return value


class JsonTexts(MadeOnce[Any]):
    """Decodes stored JSON texts, each distinct text once; ``None`` (SQL NULL) stays None.

    The decoded values are shared between the rows that stored the same text: read them, do
    not change them.
    """

    def __init__(self) -> None:
        super().__init__(json.loads)

    def __call__(self, text: str | None) -> Any:
        """The value ``text`` encodes."""
        return None if text is None else self[text]


def stored_values(column: Column[Any], dialect: Dialect) -> MadeOnce[Any]:
    """The values ``column``'s type reads of its stored texts (an enum's members), each once.

    Args:
        column: A column whose values are stored as text (a status column).
        dialect: The database's dialect.

    Returns:
        ``made[text]``: the value the column's type reads of ``text``, made once per text.
    """
    processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return MadeOnce(processor if processor is not None else str)
