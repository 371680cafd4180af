"""The sweeps on MariaDB lock the page of rows they take, however long the backlog behind it.

A sweep (expired holds, overdue orders, the outbox relay) used to pick its page with a
locking read ordered by id. Whenever the server walked the due-time index for it, it sorted
every due row and locked them all before it cut the page: a relay over a backlog of 1.1
million due messages locked every one of them and MariaDB stopped, its buffer pool full of
locks. Which walk the server takes depends on its estimates, so a sweep now picks its page
with a plain read and locks only the rows picked, by primary key.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pymysql.connections
import pytest
import sqlalchemy as sa

from tests.integration.helpers import open_services, rows

#: Rows that are not due yet, written first (lower ids), and the due backlog after them.
NOT_DUE, DUE, PAGE = 5_000, 2_000, 10

#: table: the INSERT of one row (due at :at), the sweep, the index it must walk and the
#: condition of a due row
SWEEPS = {
    "outbox": (
        "INSERT INTO outbox (task, payload, created_at, retry_at, attempts) VALUES ('t', '{}', :now, :at, 0)",
        lambda uow, now: uow.outbox.due(now, PAGE),
        "ix_outbox_pending",
        "completed_at IS NULL AND retry_at <= NOW(6)",
    ),
    "holds": (
        "INSERT INTO holds (product_id, quantity, status, expires_at, created_at, updated_at)"
        " VALUES (1, 1, 'active', :at, :now, :now)",
        lambda uow, now: uow.holds.expired(now, PAGE),
        "ix_holds_status_expires",
        "status = 'active' AND expires_at <= NOW(6)",
    ),
    "orders": (
        "INSERT INTO orders (product_id, quantity, total_price, status, payment_due_at, created_at, updated_at)"
        " VALUES (1, 1, 1.00, 'pending', :at, :now, :now)",
        lambda uow, now: uow.orders.overdue(now, PAGE),
        "ix_orders_status_due",
        "status = 'pending' AND payment_due_at <= NOW(6)",
    ),
}


def _rows_locked(run) -> int:
    """How many rows the current transaction holds locks on (`run` runs SQL in it)."""
    time.sleep(0.3)  # INNODB_TRX is a cache the server refreshes every 0.1 s
    return int(
        run(
            "SELECT trx_rows_locked FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = CONNECTION_ID()"
        ).scalar()
    )


@pytest.mark.parametrize("table", SWEEPS)
def test_a_sweep_walks_its_due_index_in_order_and_locks_its_page_not_the_backlog(
    mysql_url: str, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert, sweep, index, due = SWEEPS[table]
    with open_services(mysql_url, migrate_schema=True, background=False) as services:
        now = services.shop.deps.clock.now().replace(tzinfo=None)
        with services.engine.begin() as conn:
            conn.execute(sa.text(insert), [{"now": now, "at": now + timedelta(hours=1)}] * NOT_DUE)
            conn.execute(sa.text(insert), [{"now": now, "at": now - timedelta(hours=1)}] * DUE)
            conn.execute(sa.text(f"ANALYZE TABLE {table}"))

        # What the hazard looks like on this server: the due rows in id order, through the
        # same index, lock the whole backlog for a page of ten.
        with services.engine.begin() as conn:
            conn.execute(
                sa.text(f"SELECT id FROM {table} FORCE INDEX ({index}) WHERE {due} ORDER BY id LIMIT {PAGE} FOR UPDATE")
            ).all()
            assert _rows_locked(lambda sql: conn.execute(sa.text(sql))) >= DUE

        sent: list[str] = []
        send = pymysql.connections.Connection._execute_command

        def recording(self, command, sql):
            sent.append(sql.decode() if isinstance(sql, bytes) else str(sql))
            return send(self, command, sql)

        with services.shop.deps.uow() as uow:
            with monkeypatch.context() as patch:
                patch.setattr(pymysql.connections.Connection, "_execute_command", recording)
                page = sweep(uow, services.shop.deps.clock.now())
            locked = _rows_locked(lambda sql: uow.products.s.run(sa.text(sql)))
        (locking,) = [s for s in sent if s.lstrip().startswith("SELECT") and "FOR UPDATE" in s]
        (plan,) = rows(services.engine, "EXPLAIN " + locking.replace("%", "%%"))

    assert len(page) == PAGE
    assert plan.key == "PRIMARY" and f"{table}.id IN (" in locking, (locking, dict(plan._mapping))
    assert locked == PAGE, f"{locked} rows locked for a page of {PAGE}"


def test_a_sweep_fills_its_page_past_the_rows_another_sweep_holds(mysql_url: str) -> None:
    """Picking with a plain read cannot skip what another sweep holds: the sweep locks what
    it picked (skipping those), then picks again past them until its page is full."""
    insert = SWEEPS["outbox"][0]
    with open_services(mysql_url, migrate_schema=True, background=False) as services:
        now = services.shop.deps.clock.now().replace(tzinfo=None)
        with services.engine.begin() as conn:
            conn.execute(sa.text(insert), [{"now": now, "at": now - timedelta(hours=1)}] * (3 * PAGE))
        first = [r.id for r in rows(services.engine, f"SELECT id FROM outbox ORDER BY retry_at, id LIMIT {PAGE - 2}")]
        with services.engine.connect() as other:  # another sweep holds the first rows of the page
            held = f"SELECT id FROM outbox FORCE INDEX (PRIMARY) WHERE id IN ({','.join(map(str, first))}) FOR UPDATE"
            other.execute(sa.text(held))
            assert _rows_locked(lambda sql: other.execute(sa.text(sql))) == len(first)
            with services.shop.deps.uow() as uow:
                page = uow.outbox.due(services.shop.deps.clock.now(), PAGE)
                locked = _rows_locked(lambda sql: uow.products.s.run(sa.text(sql)))
            other.rollback()

    taken = [due.message.id for due in page]
    assert len(taken) == PAGE and not set(taken) & set(first), (taken, first)
    assert taken == sorted(taken), "in due order (equal due times: by id)"
    # InnoDB counts the rows it found held among those it tried, too: at most what it picked.
    assert PAGE <= locked <= PAGE + len(first), locked
