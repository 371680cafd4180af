"""A `stockade worker` killed with SIGKILL mid-task: the task is redelivered and finished, once."""

from __future__ import annotations

import os
import signal
import time

from stockade.adapters.sql import migrate
from tests.integration.distributed_helpers import (  # noqa: F401 - broker_url is a fixture
    broker_url,
    count_events,
    open_services,
    order_status,
    process_order_rows,
    read_log,
    spawn_ready_worker,
    spawn_stockade,
    stockade_env,
    stop_process_group,
    wait_for,
)

#: Long enough that the first worker is still inside the task when the SIGKILL lands, however
#: slowly a loaded machine gets from "received" to the kill.
PROCESSING_SECONDS = 20
#: Above PROCESSING_SECONDS (Settings refuses less): Redis must not redeliver a task still running.
VISIBILITY_TIMEOUT = 40
#: The relay, not the visibility timeout, is what hands the killed task to the second worker quickly.
OUTBOX_RETRY = 4
#: Relay once the killed task's lease (PROCESSING_SECONDS + OUTBOX_RETRY) ran out, then
#: PROCESSING_SECONDS of processing, with room for a slow machine.
PROCESSED_SECONDS = 180


def test_a_worker_killed_mid_task_leaves_the_order_to_be_processed_once_by_another(mysql_url, broker_url, tmp_path):
    """SIGKILL during process_order: the order stays created; a second worker finishes it exactly once."""
    migrate(mysql_url)
    env = stockade_env(
        STOCKADE_DATABASE_URL=mysql_url,
        STOCKADE_BROKER_URL=broker_url,
        STOCKADE_ORDER_PROCESSING_SECONDS=str(PROCESSING_SECONDS),
        STOCKADE_TASK_VISIBILITY_TIMEOUT_SECONDS=str(VISIBILITY_TIMEOUT),
        STOCKADE_OUTBOX_RETRY_SECONDS=str(OUTBOX_RETRY),
    )
    first_log, second_log = tmp_path / "worker-1.log", tmp_path / "worker-2.log"
    procs = []
    with open_services(
        mysql_url,
        broker_url=broker_url,
        order_processing_seconds=PROCESSING_SECONDS,
        task_visibility_timeout_seconds=VISIBILITY_TIMEOUT,
        outbox_retry_seconds=OUTBOX_RETRY,
    ) as services:
        engine, shop = services.engine, services.shop
        try:
            first = spawn_ready_worker(["--concurrency", "1"], env, first_log)
            procs.append(first)

            product = shop.create_product("Sprocket", "4.00", 5)
            order_id = shop.purchase(product.id, 1).order.id
            wait_for(
                lambda: "stockade.process_order" in read_log(first_log) and "received" in read_log(first_log),
                f"the first worker receiving process_order for order #{order_id}\n{read_log(first_log)}",
            )
            time.sleep(0.5)  # inside the simulated processing, well before its PROCESSING_SECONDS are up

            os.killpg(first.pid, signal.SIGKILL)
            first.wait(30)
            assert order_status(engine, order_id) == "created", read_log(first_log)
            assert count_events(engine, "order_processed", order_id) == 0

            second = spawn_stockade(["worker", "--concurrency", "1"], env, second_log)
            procs.append(second)

            def relayed_and_processed() -> bool:
                shop.relay_outbox()  # what beat would run; Redis may also redeliver after the visibility timeout
                return order_status(engine, order_id) == "processed"

            wait_for(
                relayed_and_processed,
                f"order #{order_id} processed by the second worker\n{read_log(second_log)}",
                timeout=PROCESSED_SECONDS,
            )
            # The line is logged just after the commit that made the order processed.
            wait_for(
                lambda: "Order #%d Processed." % order_id in read_log(second_log),
                "the second worker logged the processing",
            )
            wait_for(
                lambda: all(r.completed_at is not None for r in process_order_rows(engine, order_id)),
                "the process_order outbox row completed",
            )
            assert count_events(engine, "order_processed", order_id) == 1
            assert shop.check().ok
        finally:
            for proc in procs:
                stop_process_group(proc)
