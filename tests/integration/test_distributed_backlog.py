"""A real `stockade worker` with more orders queued than its pool runs, and `stockade beat`:
expired holds still come back within the sweep interval, and waiting orders are not sent again."""

from __future__ import annotations

from stockade.adapters.sql import migrate
from tests.integration.distributed_helpers import (  # noqa: F401 - broker_url is a fixture
    broker_url,
    count_events,
    open_services,
    read_log,
    scalar,
    spawn_ready_worker,
    spawn_stockade,
    stockade_env,
    stop_process_group,
    wait_for,
)

POOL = 2
PROCESSING_SECONDS = 2
#: 30 orders x 2 s on 2 threads: about 30 s of backlog, far more than the pool holds
ORDERS = 30
HOLDS = 10
HOLD_TTL_SECONDS = 2
SWEEP_SECONDS = 2
#: Short, so that a relay sending again what merely waits would show within the backlog.
OUTBOX_RETRY = 5
#: What a loaded machine may add to one sweep interval: starting a sweep, its transaction.
SLACK_SECONDS = 2.0
DRAIN_SECONDS = 180


def test_expired_holds_come_back_within_the_sweep_interval_behind_a_backlog_bigger_than_the_pool(
    mysql_url, broker_url, tmp_path
):
    """Backlog of 30 orders on a pool of 2: holds expire and are released within one sweep
    interval while the orders still wait; each order is delivered and processed once."""
    migrate(mysql_url)
    settings = {
        "STOCKADE_DATABASE_URL": mysql_url,
        "STOCKADE_BROKER_URL": broker_url,
        "STOCKADE_ORDER_PROCESSING_SECONDS": str(PROCESSING_SECONDS),
        "STOCKADE_SWEEP_INTERVAL_SECONDS": str(SWEEP_SECONDS),
        "STOCKADE_OUTBOX_RETRY_SECONDS": str(OUTBOX_RETRY),
    }
    env = stockade_env(**settings)
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    procs = []
    with open_services(
        mysql_url,
        broker_url=broker_url,
        hold_ttl_seconds=HOLD_TTL_SECONDS,
        order_processing_seconds=PROCESSING_SECONDS,
        outbox_retry_seconds=OUTBOX_RETRY,
    ) as services:
        engine, shop = services.engine, services.shop
        try:
            heartbeat = tmp_path / "beat-heartbeat"
            procs.append(spawn_stockade(["beat", "--heartbeat", str(heartbeat)], env, beat_log))
            procs.append(spawn_ready_worker(["--concurrency", str(POOL)], env, worker_log))

            sold = shop.create_product("Backlogged", "1.00", ORDERS)
            order_ids = [shop.purchase(sold.id, 1).order.id for _ in range(ORDERS)]
            held = shop.create_product("Held", "1.00", HOLDS)
            hold_ids = [shop.hold(held.id, 1).id for _ in range(HOLDS)]

            wait_for(
                lambda: scalar(engine, "SELECT COUNT(*) FROM holds WHERE status = 'active'") == 0,
                f"every hold released\nbeat:\n{read_log(beat_log)}",
            )
            processed = scalar(engine, "SELECT COUNT(*) FROM orders WHERE status = 'processed'")
            assert processed < ORDERS, "the backlog was gone before the holds expired: nothing was shown"
            lags = [
                scalar(
                    engine,
                    "SELECT TIMESTAMPDIFF(MICROSECOND, expires_at, updated_at) FROM holds "
                    "WHERE id = :id AND status = 'expired'",
                    id=hold_id,
                )
                / 1e6
                for hold_id in hold_ids
            ]
            assert max(lags) <= SWEEP_SECONDS + SLACK_SECONDS, lags
            assert scalar(engine, "SELECT reserved FROM products WHERE id = :id", id=held.id) == 0
            assert heartbeat.exists(), "beat touches its heartbeat every sweep interval while its jobs are on time"

            wait_for(
                lambda: scalar(engine, "SELECT COUNT(*) FROM orders WHERE status = 'processed'") == ORDERS,
                f"every order processed\nworker:\n{read_log(worker_log)[-3000:]}",
                timeout=DRAIN_SECONDS,
            )
            assert [count_events(engine, "order_processed", order_id) for order_id in order_ids] == [1] * ORDERS
            deliveries = scalar(engine, "SELECT SUM(deliveries) FROM outbox WHERE task = 'stockade.process_order'")
            resent = scalar(engine, "SELECT SUM(attempts) FROM outbox WHERE task = 'stockade.process_order'")
            # Near zero: only a machine stalled for a whole retry period makes the relay send again.
            assert resent <= 2 and deliveries <= ORDERS + 2, (resent, deliveries)
            assert shop.check().ok
        finally:
            for proc in procs:
                stop_process_group(proc)
