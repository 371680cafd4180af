"""GET /api/orders and GET /api/holds on MariaDB: each filter walks its own index in id order."""

from __future__ import annotations

import pymysql.connections
import pytest
import sqlalchemy as sa

from tests.integration.helpers import open_services, rows

ORDERS, HOLDS, PRODUCTS, CUSTOMERS = 3000, 3000, 10, 50


@pytest.fixture
def listing(mysql_url: str):
    """Services on a database with thousands of orders and holds, its statistics fresh."""
    with open_services(mysql_url, migrate_schema=True, background=False) as services:
        engine = services.engine
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO products (name, price, stock, reserved, version, created_at, updated_at) "
                    "VALUES ('P', 1.00, 100000, 0, 1, NOW(6), NOW(6))"
                ),
                [{}] * PRODUCTS,
            )
            conn.execute(
                sa.text(
                    "INSERT INTO orders (product_id, quantity, total_price, status, customer_id, refund_status, "
                    "created_at, updated_at) VALUES (:p, 1, 1.00, :s, :c, :r, NOW(6), NOW(6))"
                ),
                [
                    {
                        "p": 1 + i % PRODUCTS,
                        "s": ("processed", "pending", "cancelled")[i % 3],
                        "c": f"c{i % CUSTOMERS}",
                        "r": "required" if i % 30 == 2 else None,  # a few cancelled orders owe a refund
                    }
                    for i in range(ORDERS)
                ],
            )
            conn.execute(
                sa.text(
                    "INSERT INTO holds (product_id, quantity, status, expires_at, customer_id, created_at, "
                    "updated_at) VALUES (:p, 1, :s, NOW(6), :c, NOW(6), NOW(6))"
                ),
                [
                    {"p": 1 + i % PRODUCTS, "s": ("expired", "used", "released")[i % 3], "c": f"c{i % CUSTOMERS}"}
                    for i in range(HOLDS)
                ],
            )
            conn.execute(sa.text("ANALYZE TABLE orders, holds"))
        yield services


def _plan(services, list_rows, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """EXPLAIN of the SELECT the listing sends."""
    sent: list[str] = []
    send = pymysql.connections.Connection._execute_command

    def recording(self, command, sql):
        text = sql.decode() if isinstance(sql, bytes) else str(sql)
        if text.lstrip().upper().startswith("SELECT") and ("FROM orders" in text or "FROM holds" in text):
            sent.append(text)
        return send(self, command, sql)

    with monkeypatch.context() as patch:
        patch.setattr(pymysql.connections.Connection, "_execute_command", recording)
        list_rows()
    assert len(sent) == 1, sent
    return [dict(r._mapping) for r in rows(services.engine, "EXPLAIN " + sent[0].replace("%", "%%"))]


#: (table, filters, the index the plan must use)
PLANS = [
    ("orders", {"status": "pending"}, "ix_orders_status_id"),
    ("orders", {"product_id": 3}, "ix_orders_product_id"),
    ("orders", {"customer_id": "c7"}, "ix_orders_customer_id"),
    ("orders", {"customer_id": "c7", "status": "pending", "after_id": 1500}, "ix_orders_customer_id"),
    ("orders", {"refund_status": "required"}, "ix_orders_refund_status_id"),
    ("orders", {"after_id": 2900}, "PRIMARY"),
    ("holds", {"status": "used"}, "ix_holds_status_id"),
    ("holds", {"product_id": 3}, "ix_holds_product_id"),
    ("holds", {"customer_id": "c7"}, "ix_holds_customer_id"),
    ("holds", {"after_id": 2900}, "PRIMARY"),
]


def test_each_listing_filter_uses_its_index_in_id_order(listing, monkeypatch) -> None:
    for table, search, index in PLANS:
        list_rows = listing.shop.list_orders if table == "orders" else listing.shop.list_holds
        plan = _plan(listing, lambda: list_rows(limit=50, **search), monkeypatch)  # noqa: B023 - called at once
        where = f"{table} {search}: {plan}"
        assert len(plan) == 1, where
        assert plan[0]["key"] == index, where
        # Rows come in id order, so the page stops at `limit`; no sort of every match.
        assert "filesort" not in (plan[0]["Extra"] or ""), where
