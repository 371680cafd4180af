"""`make bench`, second part: how fast background work drains a flash sale, with default settings.

On each stack, N purchases (default 1000) as fast as 32 clients can send them, one unit each
of one product, while a hold is placed every 0.5 s on another product. Then it waits until
every order is `processed`, and prints:

- drain: seconds from the last sale's answer until the last order is processed;
- deliveries: how many times a task started process_order (the outbox counts each start);
- expiry lag: for the holds placed during the backlog, how long after `expires_at` the
  sweep released each one (the worst and the median);
- the largest task lag and outbox backlog that /metrics showed meanwhile.

Stacks: the distributed one (`stockade serve --workers 2` on MariaDB with the Redis cache,
one `stockade worker` and one `stockade beat` on a Redis broker), and the embedded default
(`stockade serve` on a SQLite file, tasks and sweeps in its process). Every setting is the
default but the hold TTL, 2 s, so that the holds expire while the backlog is there.

    .venv/bin/python benchmarks/drain.py [-n 1000] [--only distributed|embedded]
        [--mysql-url URL] [--redis-url URL]

Figures go to stdout, progress to stderr. Exits non-zero only when the benchmark cannot run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from bench import (  # benchmarks/ is on sys.path when a script here runs
    ROOT,
    STOCKADE,
    Server,
    ServerFailed,
    _target,
    add_server_arguments,
    call,
    create_product,
    log,
    mysql_database,
    redis_db,
    stockade_cli,
)

CLIENTS = 32
HOLD_EVERY_SECONDS = 0.5
HOLD_TTL_SECONDS = 2
#: The defaults the targets are stated for (STOCKADE_ORDER_PROCESSING_SECONDS, STOCKADE_SWEEP_INTERVAL_SECONDS).
PROCESSING_SECONDS = 5.0
SWEEP_SECONDS = 5.0
#: How long we wait for the drain before giving up (the target is 35 s).
GIVE_UP_SECONDS = 600
MYSQL_DB = "stockade_drain"

#: Defaults everywhere, but holds that expire during the backlog. Empty values override a
#: caller's environment (unset, as far as Stockade is concerned).
DRAIN_ENV = {
    "STOCKADE_ENV": "development",
    "STOCKADE_HOLD_TTL_SECONDS": str(HOLD_TTL_SECONDS),
    "STOCKADE_ORDER_PROCESSING_SECONDS": "",
    "STOCKADE_SWEEP_INTERVAL_SECONDS": "",
    "STOCKADE_OUTBOX_RETRY_SECONDS": "",
    "STOCKADE_TASK_CONCURRENCY": "",
    "STOCKADE_ADMIN_TOKEN": "",
    "STOCKADE_WEBHOOK_SECRET": "",
}


@dataclass
class Drain:
    stack: str
    orders: int
    sale_seconds: float
    drain_seconds: float | None
    deliveries: int
    holds: int
    expiry_lag_max: float | None
    expiry_lag_median: float | None
    task_lag_max: float
    outbox_pending_max: float


class Process:
    """A `stockade` command in a subprocess, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name, self.log_path = name, logdir / f"{name}.log"
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(
                [STOCKADE, *args], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )

    def wait_for_line(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n  ".join(self.log_path.read_text(errors="replace").splitlines()[-25:])
                raise ServerFailed(
                    f"{self.name} did not log {text!r} within {timeout:.0f} s "
                    f"(exit status {self.proc.poll()}). Last lines:\n  {tail}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def gauges(server: Server) -> dict[str, float]:
    """The task lag and outbox gauges of /metrics (none when it does not answer)."""
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("stockade_task_lag_seconds", "stockade_outbox_pending_messages"):
            found[name] = float(value)
    return found


def drain(stack: str, server: Server, database_url: str, n: int) -> Drain:
    """Sell n units as fast as CLIENTS clients can, place holds meanwhile, wait for the drain."""
    sold_id = create_product(server, "drain sale", n)
    held_id = create_product(server, "drain holds", 10_000)
    engine = sa.create_engine(database_url)
    stop_holds, seen = threading.Event(), {"task_lag": 0.0, "pending": 0.0}

    def place_holds() -> None:
        while not stop_holds.wait(HOLD_EVERY_SECONDS):
            call(server.url + "/api/holds", "POST", {"product_id": held_id, "quantity": 1})
            found = gauges(server)
            seen["task_lag"] = max(seen["task_lag"], found.get("stockade_task_lag_seconds", 0.0))
            seen["pending"] = max(seen["pending"], found.get("stockade_outbox_pending_messages", 0.0))

    def buy(_: int) -> int:
        return call(server.url + "/api/orders/purchase", "POST", {"product_id": sold_id, "quantity": 1})[0]

    def scalar(sql: str, **params) -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar() or 0

    holder = threading.Thread(target=place_holds, daemon=True)
    holder.start()
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(buy, range(n)))
    last_sale = time.monotonic()
    if statuses.count(201) != n:
        log(f"  {stack}: {n - statuses.count(201)} purchases were not 201: {sorted(set(statuses))}")
    log(f"  {stack}: {n} purchases in {last_sale - started:.1f} s; waiting for every order to be processed")
    done_at = None
    while time.monotonic() - last_sale < GIVE_UP_SECONDS:
        processed = scalar("SELECT COUNT(*) FROM orders WHERE product_id = :p AND status = 'processed'", p=sold_id)
        if processed >= statuses.count(201):
            done_at = time.monotonic()
            break
        time.sleep(0.2)
    stop_holds.set()
    holder.join()
    # The last holds expire HOLD_TTL_SECONDS after they were placed; give the sweep its interval and more.
    deadline = time.monotonic() + HOLD_TTL_SECONDS + 3 * SWEEP_SECONDS
    while (
        scalar("SELECT COUNT(*) FROM holds WHERE product_id = :p AND status = 'active'", p=held_id)
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT expires_at, updated_at FROM holds WHERE product_id = :p AND status = 'expired'"),
            {"p": held_id},
        ).all()
    lags = [(_moment(updated) - _moment(expires)).total_seconds() for expires, updated in rows]
    deliveries = scalar("SELECT SUM(deliveries) FROM outbox WHERE task = 'stockade.process_order'")
    engine.dispose()
    return Drain(
        stack,
        statuses.count(201),
        last_sale - started,
        done_at and done_at - last_sale,
        int(deliveries),
        len(lags),
        max(lags, default=None),
        statistics.median(lags) if lags else None,
        seen["task_lag"],
        seen["pending"],
    )


def _moment(value: str | datetime) -> datetime:
    """SQLite hands DATETIME back as text through a text() query; MySQL as datetime."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def distributed(stack: ExitStack, args: argparse.Namespace, tmp: Path) -> Drain:
    mysql_url, _ = stack.enter_context(mysql_database(args.mysql_url, MYSQL_DB))
    cache_url = stack.enter_context(redis_db(args.redis_url))
    broker_url = stack.enter_context(redis_db(args.redis_url))
    env = {
        **DRAIN_ENV,
        "STOCKADE_DATABASE_URL": mysql_url,
        "STOCKADE_REDIS_URL": cache_url,
        "STOCKADE_BROKER_URL": broker_url,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
    }
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"])
    migrated = stockade_cli(env, "migrate")
    if migrated.returncode != 0:
        raise SystemExit(f"drain: `stockade migrate` failed on {mysql_url}:\n{migrated.stderr.strip()}")
    server = Server("drain-api-mariadb", [STOCKADE, "serve"], env, "/healthz", tmp).start()
    stack.callback(server.wait_stopped)
    stack.callback(server.stop)
    worker = Process("drain-worker", ["worker"], env, tmp)
    stack.callback(worker.stop)
    beat = Process("drain-beat", ["beat"], env, tmp)
    stack.callback(beat.stop)
    server.wait()
    worker.wait_for_line("ready")
    beat.wait_for_line("beat: ")
    return drain("distributed (MariaDB, Redis, 1 stockade worker, 1 beat)", server, mysql_url, args.n)


def embedded(stack: ExitStack, args: argparse.Namespace, tmp: Path) -> Drain:
    url = f"sqlite:///{tmp}/drain.db"
    env = {**DRAIN_ENV, "STOCKADE_DATABASE_URL": url, "STOCKADE_REDIS_URL": "", "STOCKADE_BROKER_URL": ""}
    server = Server("drain-api-sqlite", [STOCKADE, "serve"], env, "/healthz", tmp, workers=1).start()
    stack.callback(server.wait_stopped)
    stack.callback(server.stop)
    server.wait()
    return drain("embedded default (SQLite, stockade serve)", server, url, args.n)


def report(result: Drain) -> None:
    print(f"\n{result.stack}: {result.orders} purchases in {result.sale_seconds:.1f} s")
    drained = "not within the give-up time" if result.drain_seconds is None else f"{result.drain_seconds:.1f} s"
    print(f"  drain after the last sale: {drained}; process_order deliveries: {result.deliveries}")
    lag = (
        "n/a"
        if result.expiry_lag_max is None
        else f"max {result.expiry_lag_max:.2f} s, median {result.expiry_lag_median:.2f} s"
    )
    print(f"  expiry lag of {result.holds} holds placed during the backlog: {lag}")
    print(
        f"  /metrics meanwhile: task lag up to {result.task_lag_max:.1f} s, "
        f"outbox pending up to {result.outbox_pending_max:.0f}"
    )
    _target("all processed after the last sale (s)", result.drain_seconds, "<=", PROCESSING_SECONDS + 30)
    _target("deliveries / orders", result.deliveries / result.orders if result.orders else None, "<=", 1.05)
    _target("expiry lag, worst hold (s)", result.expiry_lag_max, "<=", SWEEP_SECONDS + 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="purchases (and units for sale)")
    parser.add_argument("--only", choices=("distributed", "embedded"), help="run one stack only")
    add_server_arguments(parser, "a Redis server (two free dbs are leased and flushed)")
    args = parser.parse_args()
    print(
        f"Drain benchmark: {args.n} purchases by {CLIENTS} clients, default settings (processing "
        f"{PROCESSING_SECONDS:g} s, sweep every {SWEEP_SECONDS:g} s) but a hold TTL of {HOLD_TTL_SECONDS} s; "
        f"{os.cpu_count()} CPUs shared by clients, servers and databases."
    )
    for name, run in (("distributed", distributed), ("embedded", embedded)):
        if args.only not in (None, name):
            continue
        log(f"drain: {name} stack")
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stockade-drain-")))
            try:
                result = run(stack, args, tmp)
            except ServerFailed as exc:
                raise SystemExit(
                    f"drain: cannot run the {name} stack: {exc}\nFix it, then rerun "
                    "`.venv/bin/python benchmarks/drain.py`."
                ) from None
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
