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


def test_stored_values_read_a_status_as_its_column_does_each_text_once() -> None:
    from sqlalchemy.dialects import sqlite

    from nurture.storage.models import ConsentStatus, Member, table_of
    from nurture.storage.stored_json import stored_values

    made = stored_values(table_of(Member).c.consent_status, sqlite.dialect())

    granted = made["granted"]
    assert granted is ConsentStatus.GRANTED and made["denied"] is ConsentStatus.DENIED
    assert made["granted"] is granted and len(made) == 2
    with pytest.raises(LookupError):
        made["bogus"]  # a value the enum lacks, as the column's type refuses it
