"""Fixtures for unit tests: a Shop on in-memory fakes, and one product to sell."""

from __future__ import annotations

import pytest

from .fakes import make_shop


@pytest.fixture
def world():
    return make_shop()


@pytest.fixture
def shop(world):
    return world[0]


@pytest.fixture
def store(world):
    return world[1]


@pytest.fixture
def publisher(world):
    return world[2]


@pytest.fixture
def clock(world):
    return world[3]


@pytest.fixture
def phone(shop):
    """A live product: 10 units at 100.00."""
    return shop.create_product("Phone", "100.00", 10)
