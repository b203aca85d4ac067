from __future__ import annotations

import json

import pytest

from nurture.storage.stored_json import JsonTexts


def test_each_distinct_text_is_decoded_once(monkeypatch) -> None:
    calls: list[str] = []
    loads = json.loads

    def counting_loads(text: str) -> object:
        calls.append(text)
        return loads(text)

    monkeypatch.setattr("nurture.storage.stored_json.json.loads", counting_loads)
    decode = JsonTexts()
    values = [decode(text) for text in ['"founder"', '["a", "b"]', '"founder"', '["a", "b"]', None]]
    assert values == ["founder", ["a", "b"], "founder", ["a", "b"], None]
    assert calls == ['"founder"', '["a", "b"]']
    assert values[1] is values[3]  # shared: read, not changed


def test_a_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(json.JSONDecodeError):
        JsonTexts()("{not json")
