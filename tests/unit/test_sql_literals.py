"""The MySQL batch inlines parameters itself, before it holds a connection: each literal is
what the driver would have written on a connection with backslash escapes (every one of ours)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pymysql
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.adapters.sql.session import _json_encode, _json_literal, _literal
from stockade.application.ports import Ref, resolved
from stockade.domain.model import HoldStatus, OrderStatus


@pytest.fixture(scope="module")
def driver() -> pymysql.connections.Connection:
    """A PyMySQL connection object that never connects: its `escape` is the reference."""
    conn = pymysql.connections.Connection(defer_connect=True)
    conn.server_status = 0  # as a server with backslash escapes (the default) reports
    return conn


VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-(10**13), max_value=10**13),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(),
    st.datetimes(timezones=st.just(timezone.utc)),
    st.none(),
    st.booleans(),
    st.text(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.binary(),
    st.binary().map(bytearray),
    st.sampled_from(list(OrderStatus) + list(HoldStatus)),  # str enums: written as their value
    st.tuples(st.integers(), st.text()),
)


@given(VALUES)
def test_a_literal_is_what_the_driver_writes(driver, value):
    assert _literal(value) == driver.escape(value)


@pytest.mark.parametrize(
    "value",
    [Decimal("1E+2"), Decimal("-0.50"), datetime(2026, 1, 2, 3, 4, 5), datetime(2026, 1, 2, 3, 4, 5, 12), "o'k\\"],
)
def test_edge_literals_are_what_the_driver_writes(driver, value):
    assert _literal(value) == driver.escape(value)


JSON_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.decimals(allow_nan=False, places=2),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(JSON_DATA)
def test_a_json_parameter_is_written_as_the_driver_escapes_its_text(driver, data):
    text = _json_encode(data)
    assert _json_literal(text) == driver.escape(text)


def test_resolved_fills_refs_in_nested_values_and_keeps_what_has_none():
    ref = Ref(7)
    plain = {"a": (1, "x", None)}
    assert resolved(plain) == plain
    assert resolved({"id": ref, "items": (ref, {"inner": ref})}) == {"id": 7, "items": (7, {"inner": 7})}
