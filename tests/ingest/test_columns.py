"""Field parsers over a batch (``fields.Column``) give exactly what each value's parser gives:
the fast checks only ever take values the parser would keep as they are."""

import datetime as dt

import pytest

from nurture.errors import ImportRecordError
from nurture.ingest import fields

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
TEXTS = ["ada", "Ada Lovelace", " padded ", "", None, 17, 2.5, "é", "a\tb", "x" * 201, ["list"]]
MOMENTS = [
    "2026-01-01T10:00:00Z",
    "2026-01-01T10:00:00+05:30",
    "2026-01-01 10:00",
    "2026-01-01T10:00",
    "2026-01-01",
    "2026-02-30T10:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:30:00+01:00",
    "1899-12-31T23:59:59Z",
    "2999-01-01T00:00:00Z",
    "2026-01-01T10:00:00.123456+01:00",
    " 2026-01-01T10:00:00Z ",
    None,
    "",
    20260101,
]


def _each(values, parse):
    out = []
    for value in values:
        try:
            out.append(parse(value))
        except ImportRecordError as exc:
            out.append((exc.field, exc.reason))
    return out


def _seen(column):
    return [
        (value.field, value.reason) if isinstance(value, ImportRecordError) else value
        for value in column.values
    ]


@pytest.mark.parametrize("required", [False, True])
@pytest.mark.parametrize("values", [TEXTS, ["ada", "bob"], ["ada", None], [None, None]])
def test_text_column_is_the_text_parser_over_each_value(values, required):
    column = fields.text_column(list(values), "f", required=required, max_length=200)

    assert _seen(column) == _each(
        values, lambda v: fields.parse_text({"f": v}, "f", required=required, max_length=200)
    )
    assert column.refused == any(isinstance(v, ImportRecordError) for v in column.values)


@pytest.mark.parametrize("required", [False, True])
@pytest.mark.parametrize(
    "values", [MOMENTS, MOMENTS[:2], [MOMENTS[0], None], [MOMENTS[0], MOMENTS[-6]]]
)
def test_datetime_column_is_the_datetime_parser_over_each_value(values, required):
    column = fields.past_datetime_column(list(values), "t", NOW, required=required)

    def one(value):
        if required and value in (None, ""):
            raise ImportRecordError("is required but missing or empty", field="t")
        return fields.parse_past_datetime({"t": value}, "t", NOW)

    assert _seen(column) == _each(values, one)


@pytest.mark.parametrize(
    "values", [["post", "comment"], ["post", "Post", " post", None, "dance", ["post"], 3]]
)
def test_choice_column_is_the_choice_parser_over_each_value(values):
    choices = ("post", "comment")
    column = fields.choice_column(list(values), "type", choices)

    assert _seen(column) == _each(
        values, lambda v: fields.parse_choice({"type": v}, "type", choices)
    )
