"""The API's JSON row rendering (serving/encoding.py): the compiled keyed-row path gives exactly
what the plain ``dict(zip(...))`` path gives, in the same key order."""
from __future__ import annotations

import datetime as dt

import pytest

from serving import encoding, queries

KEY = ("AAPL", "1m")
START = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.timezone.utc)
PAGE_ROWS = [(START + dt.timedelta(minutes=i), 100.0 + i, 101.5, 99.25, 100.5, 1200.0, 100.4, 7 + i, "ON_TIME", i,
              START + dt.timedelta(minutes=i, seconds=61)) for i in range(3)]


def test_keyed_rows_render_as_plain_rows_do():
    keyed = encoding.keyed_row_dicts(queries.BAR_ROW_COLUMNS, KEY, PAGE_ROWS)
    plain = encoding.row_dicts(queries.BAR_ROW_COLUMNS, [KEY + row for row in PAGE_ROWS])
    assert keyed == plain
    assert [list(item) for item in keyed] == [list(queries.BAR_ROW_COLUMNS)] * len(PAGE_ROWS)
    assert encoding.dumps(keyed) == encoding.dumps(plain)
    assert encoding.dumps(keyed[0]).startswith(
        b'{"symbol":"AAPL","interval":"1m","bucket_start":"2024-03-05T14:30:00Z"')


def test_a_page_row_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError):
        encoding.keyed_row_dicts(queries.BAR_ROW_COLUMNS, KEY, [PAGE_ROWS[0][:-1]])


def test_column_names_are_only_ever_keys():
    columns = ("a'); import os; ('", "b")
    assert encoding.keyed_row_dicts(columns, (), [(1, 2)]) == [{columns[0]: 1, "b": 2}]
    assert encoding.keyed_row_dicts(columns, (1, 2), [()]) == [{columns[0]: 1, "b": 2}]
