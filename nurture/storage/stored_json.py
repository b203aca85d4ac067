"""Reading JSON columns in bulk: each distinct stored text decoded once.

Answers repeat: thousands of members chose the same option, and decoding each row's value
costs more than the query that read it. Read the column as text (``cast(column, Text)``) and
decode it with a :class:`JsonTexts`.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JsonTexts"]


class JsonTexts:
    """Decodes stored JSON texts, each distinct text once; ``None`` (SQL NULL) stays None.

    The decoded values are shared between the rows that stored the same text: read them, do
    not change them.
    """

    def __init__(self) -> None:
        self._values: dict[str | None, Any] = {None: None}

    def __call__(self, text: str | None) -> Any:
        """The value ``text`` encodes."""
        try:
            return self._values[text]
        except KeyError:
            value = self._values[text] = json.loads(text)  # type: ignore[arg-type]
            return value
