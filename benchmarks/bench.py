"""`make bench`: Stockade against baselines on the same stack, side by side, in one run.

Every server runs under `stockade.entrypoints.gunicorn_app.serve` (the function `stockade
serve` uses) with --workers 2: `stockade serve` on MariaDB + Redis, `stockade serve` on its
embedded SQLite default, and benchmarks/baselines.py (hello-world, a one-round-trip raw
purchase, a naive FOR UPDATE purchase, a raw SQLite purchase). wrk drives each endpoint with
64 connections; endpoints take turns (A B C ... A B C ...) over the rounds and the table shows
the median of the rounds. Each target ratio is the median over the rounds of the two
endpoints' ratio within a round, and each endpoint runs right after the one it is compared
with (hello, then sold-out and read; the raw purchase, then Stockade's purchases): the VM's
speed drifts by tens of percent over minutes, and ratios of runs taken minutes apart swung
by as much (sold-out against hello: 0.50 and 0.63 in two runs of the same commit). Then a
flash sale: 200 connections on one product with a stock of 1000, against Stockade and
against the raw one-round-trip purchase, with the books checked.

    .venv/bin/python benchmarks/bench.py [--quick] [--seconds 5] [--rounds 4] [--plot PATH]
        [--mysql-url URL] [--redis-url URL]

Figures go to stdout, progress to stderr, a bar plot of req/s to benchmarks/results.png.
Exits non-zero only when the benchmark cannot run (a server or database is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import baselines  # benchmarks/ is on sys.path when a script here runs
import pymysql
import redis

ROOT = Path(__file__).resolve().parent.parent
STOCKADE = str(Path(sys.executable).with_name("stockade"))
WORKERS = 2
CONNECTIONS = 64
FLASH_CONNECTIONS = 200
FLASH_STOCK = 1000
PLENTY = 2**31 - 1
MYSQL_DB = "stockade_bench"

#: The Stockade settings of every run. Order processing (a task that sleeps this long) is
#: pushed past the run, and so are hold expiry and outbox re-delivery, so that background
#: work does not compete with the measured requests.
STOCKADE_ENV = {
    "STOCKADE_ENV": "development",
    "STOCKADE_ORDER_PROCESSING_SECONDS": "3600",
    "STOCKADE_TASK_VISIBILITY_TIMEOUT_SECONDS": "7200",  # must exceed the processing time
    "STOCKADE_OUTBOX_RETRY_SECONDS": "3600",
    "STOCKADE_HOLD_TTL_SECONDS": "3600",
    "STOCKADE_HOLD_MAX_SECONDS": "7200",  # at least the hold TTL
    "STOCKADE_BROKER_URL": "",  # embedded tasks, whatever the caller's environment says
    "STOCKADE_ADMIN_TOKEN": "",
    "STOCKADE_WEBHOOK_SECRET": "",
}

MARIADB, SQLITE = "MariaDB + Redis cache", "SQLite embedded default"
FLASH = f"Flash sale ({MARIADB}): {FLASH_CONNECTIONS} connections, one product with a stock of {FLASH_STOCK}"

#: Lua for wrk: the request, an optional unique Idempotency-Key or customer_id (thread id +
#: counter), and a tally of response statuses that done() prints as "status <code> <count>" lines.
LUA = """
wrk.method = "{method}"
local threads = {{}}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  statuses = {{}}
  counter = 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {{}}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      total[code] = (total[code] or 0) + n
    end
  end
  for code, n in pairs(total) do
    io.write(string.format("status %d %d\\n", code, n))
  end
end
"""
LUA_BODY = """
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
"""
LUA_KEYED = """
function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = "{prefix}-" .. tid .. "-" .. counter
  return wrk.format()
end
"""
#: A body whose customer_id is new with every request: `{body}` has two %d, the thread and the counter.
LUA_CUSTOMERS = """
function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format([[{body}]], tid, counter))
end
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """One HTTP request; (status, JSON body or {})."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"raw": raw[:300].decode("utf-8", "replace")}


class ServerFailed(Exception):
    """A server did not come up; the message says where to look."""


class Server:
    """An HTTP server (`stockade serve`, or the baselines) in a subprocess, on a free port."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], health: str, logdir: Path, workers: int = WORKERS
    ) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [*argv, "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        self.env = {**os.environ, **env}
        self.health = health
        self.log_path = logdir / f"{name.replace(' ', '-')}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def wait(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"{self.name} exited with status {self.proc.returncode}.\n{self.log_tail()}")
            try:
                if call(self.url + self.health)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise ServerFailed(f"{self.name} did not answer GET {self.health} within {timeout:.0f} s.\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"Last lines of its log ({' '.join(self.argv)}):\n  " + "\n  ".join(text)

    def worker_class(self) -> str:
        found = re.search(r"Using worker: (\S+)", self.log_path.read_text(errors="replace"))
        return found.group(1) if found else "?"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def wait_stopped(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Run:
    """One wrk run of one endpoint."""

    rps: float
    p50: float  # ms
    p99: float  # ms
    statuses: Counter
    socket_errors: int
    server_cpu: float  # CPU time over the run in percent of one core: the measured server's processes,
    wrk_cpu: float  # wrk,
    db_cpu: float  # the local MariaDB and Redis servers,
    other_cpu: float  # everything else on the machine (idle servers, other people's tests...)
    idle: float  # and the machine's idle time, in percent of one core too
    round_no: int = 0  # which round of the benchmark it was measured in


@dataclass
class Endpoint:
    key: str
    config: str  # MARIADB or SQLITE: the table it is shown in
    label: str
    server: Server
    path: str
    method: str = "GET"
    body: dict | None = None
    expect: int = 200
    keyed: bool = False
    #: a new customer_id in the body of every request (`body` then has no customer_id)
    customers: bool = False
    skipped: str | None = None  # why it was not measured
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.runs]
        return statistics.median(values) if values else None

    def statuses(self) -> Counter:
        total: Counter = Counter()
        for r in self.runs:
            total.update(r.statuses)
        return total

    def probe(self) -> None:
        """One request first: an endpoint that answers the wrong status is reported, not timed."""
        headers = {"Idempotency-Key": f"probe-{uuid.uuid4().hex}"} if self.keyed else None
        sent = {**(self.body or {}), "customer_id": f"probe-{uuid.uuid4().hex}"} if self.customers else self.body
        status, body = call(self.server.url + self.path, self.method, sent, headers)
        if status != self.expect:
            self.skipped = f"probe answered {status} (expected {self.expect}): {json.dumps(body)[:200]}"


_TICK = os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:8]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / _TICK, idle / _TICK


def _tree_cpu(pid: int) -> float:
    """CPU seconds used so far by process `pid` and its live descendants (a gunicorn master and workers)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:  # gone meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK + sum(_tree_cpu(c) for c in children)


def _database_pids() -> list[int]:
    """The local MariaDB/MySQL and Redis server processes, to tell their CPU use apart."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() in ("mariadbd", "mysqld", "redis-server"):
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


DATABASE_PIDS = _database_pids()


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(ep: Endpoint, seconds: float, connections: int, tmp: Path) -> Run:
    """Drive `ep` with wrk; its figures, the status tally and the client's CPU use."""
    run_id = uuid.uuid4().hex[:12]
    lua = LUA.format(method=ep.method)
    if ep.body is not None:
        lua += LUA_BODY.format(body=json.dumps(ep.body))
    if ep.keyed:
        lua += LUA_KEYED.format(prefix=f"bench-{run_id}")  # unique across runs and rounds
    if ep.customers:
        assert ep.body is not None, "a body to name the customers in"
        lua += LUA_CUSTOMERS.format(body=json.dumps({**ep.body, "customer_id": f"bench-{run_id}-%d-%d"}))
    script = tmp / f"{ep.key}-{run_id}.lua"
    script.write_text(lua)
    argv = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        ep.server.url + ep.path,
    ]

    def cpu() -> tuple[float, ...]:  # wrk (the only child that exits meanwhile), server, databases, machine
        own = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            own.ru_utime + own.ru_stime,
            _tree_cpu(ep.server.proc.pid),
            sum(map(_tree_cpu, DATABASE_PIDS)),
            *_machine_cpu(),
        )

    before = cpu()
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    elapsed = time.monotonic() - start
    wrk_cpu, server_cpu, db_cpu, busy, idle = (100 * (b - a) / elapsed for a, b in zip(before, cpu()))
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if done.returncode != 0 or rps is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or out.strip()}")
    latency = {m[0]: _ms(m[1], m[2]) for m in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Run(
        rps=float(rps.group(1)),
        p50=latency.get("50", float("nan")),
        p99=latency.get("99", float("nan")),
        statuses=Counter({int(code): int(n) for code, n in re.findall(r"^status (\d+) (\d+)$", out, re.M)}),
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        server_cpu=server_cpu,
        wrk_cpu=wrk_cpu,
        db_cpu=db_cpu,
        other_cpu=max(0.0, busy - server_cpu - wrk_cpu - db_cpu),
        idle=idle,
    )


@contextmanager
def mysql_database(url: str | None, name: str) -> Iterator[tuple[str, str]]:
    """(URL, server description): `url` if given; else a fresh database `name`_<pid> on the
    local server (root, no password), dropped afterwards: two runs at once each have their own."""
    name = f"{name}_{os.getpid()}"
    local = f"mysql+pymysql://root:@127.0.0.1:3306/{name}?charset=utf8mb4"
    server = baselines.mysql_server(url or local)
    try:
        conn = pymysql.connect(**server, connect_timeout=3)
    except pymysql.MySQLError as exc:
        raise SystemExit(
            f"bench: no MySQL-compatible server answers at {server['host']}:{server['port']} "
            f"as {server['user']} ({exc}).\nStart one (`python scripts/ensure_services.py`), or pass "
            "--mysql-url mysql+pymysql://USER:PASSWORD@HOST:PORT/DATABASE (it gets bench tables "
            "and rows)."
        ) from None
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit")
        version, flush = cur.fetchone()
        if not url:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    description = f"{version}, innodb_flush_log_at_trx_commit={flush}"
    try:
        yield url or local, description
    finally:
        if not url:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


#: The lease tests/integration/conftest.py takes on a Redis db (a key in db 0) before it
#: flushes one: taking it the same way keeps a concurrent test run off our db, and us off its.
REDIS_LEASE_KEY = "stockade-test-lease:{db}"


@contextmanager
def redis_db(url: str) -> Iterator[str]:
    """A flushed Redis db: the one `url` names, else a free one of 15..1, leased meanwhile."""
    parts = urlsplit(url)
    leases = redis.Redis.from_url(urlunsplit(parts._replace(path="/0")), socket_connect_timeout=3)
    me, lease = f"bench:{socket.gethostname()}:{os.getpid()}", None
    try:
        if parts.path.strip("/"):
            db_url = url
        else:
            db = next(
                (n for n in range(15, 0, -1) if leases.set(REDIS_LEASE_KEY.format(db=n), me, nx=True, ex=3600)), None
            )
            if db is None:
                raise SystemExit(
                    f"bench: Redis dbs 1..15 of {url} are all leased by test runs; wait for them "
                    "or pass --redis-url redis://HOST:PORT/N (db N gets flushed)."
                )
            db_url, lease = urlunsplit(parts._replace(path=f"/{db}")), REDIS_LEASE_KEY.format(db=db)
        client = redis.Redis.from_url(db_url, socket_connect_timeout=3)
        client.flushdb()
    except redis.ConnectionError as exc:
        raise SystemExit(
            f"bench: Redis at {url} does not answer ({exc}).\n"
            "Start it (`python scripts/ensure_services.py`), or pass --redis-url."
        ) from None
    try:
        yield db_url
    finally:
        client.flushdb()
        if lease and leases.get(lease) == me.encode():
            leases.delete(lease)


def stockade_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([STOCKADE, *args], env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT)


def create_product(server: Server, name: str, stock: int, max_per_customer: int | None = None) -> int:
    product = {"name": name, "price": "10.00", "stock": stock, "max_per_customer": max_per_customer}
    status, body = call(server.url + "/api/products", "POST", product)
    if status != 201:
        raise ServerFailed(f"POST /api/products answered {status}: {json.dumps(body)[:200]}")
    return body["data"]["id"]


def stockade_endpoints(config: str, server: Server) -> dict[str, Endpoint]:
    healthz = Endpoint("healthz", config, "stockade GET /healthz", server, "/healthz")
    try:
        plenty = create_product(server, "bench plenty", PLENTY)
        gone = create_product(server, "bench sold out", 0)
        limited = create_product(server, "bench limited", PLENTY, max_per_customer=5)
    except ServerFailed as exc:  # reported in the table; the rest of the benchmark still runs
        plenty = gone = limited = 0
        skipped = f"no product to use: {exc}"
    else:
        skipped = None
    buy = {"product_id": plenty, "quantity": 1}
    rest = [
        Endpoint("purchase", config, "stockade purchase 201", server, "/api/orders/purchase", "POST", buy, 201),
        Endpoint(
            "purchase_key",
            config,
            "stockade purchase 201 + Idempotency-Key",
            server,
            "/api/orders/purchase",
            "POST",
            buy,
            201,
            keyed=True,
        ),
        Endpoint(
            "purchase_limited",
            config,
            "stockade purchase 201, limited product with customer_id",
            server,
            "/api/orders/purchase",
            "POST",
            {"product_id": limited, "quantity": 1},
            201,
            customers=True,
        ),
        Endpoint(
            "sold_out",
            config,
            "stockade purchase 409 sold out",
            server,
            "/api/orders/purchase",
            "POST",
            {"product_id": gone, "quantity": 1},
            409,
        ),
        Endpoint("read", config, "stockade GET /api/products/{id}", server, f"/api/products/{plenty}"),
        Endpoint("hold", config, "stockade POST /api/holds 201", server, "/api/holds", "POST", buy, 201),
    ]
    for ep in rest:
        ep.skipped = skipped
    return {ep.key: ep for ep in [healthz, *rest]}


#: (config, what, numerator, denominator, ">=" or "<=", target); keys of endpoints in `config`.
TARGETS = [
    (MARIADB, "purchase 201 / raw one-round-trip", "purchase", "raw", ">=", 0.7),
    (MARIADB, "purchase 201 / naive FOR UPDATE", "purchase", "naive", ">=", 2),
    (MARIADB, "purchase + key / raw one-round-trip", "purchase_key", "raw", ">=", 0.5),
    (MARIADB, "limited purchase / raw one-round-trip", "purchase_limited", "raw", ">=", 0.6),
    (MARIADB, "sold-out 409 / stockade /healthz", "sold_out", "healthz", ">=", 0.6),
    (MARIADB, "sold-out 409 / baseline /hello", "sold_out", "hello", ">=", 0.6),
    (MARIADB, "product read / stockade /healthz", "read", "healthz", ">=", 0.7),
    (MARIADB, "product read / baseline /hello", "read", "hello", ">=", 0.7),
    (SQLITE, "purchase 201 / raw-sqlite", "purchase", "raw_sqlite", ">=", 0.7),
    (SQLITE, "sold-out 409 / stockade /healthz", "sold_out", "healthz", ">=", 0.6),
    (SQLITE, "sold-out 409 / baseline /hello", "sold_out", "hello", ">=", 0.6),
    (SQLITE, "product read / stockade /healthz", "read", "healthz", ">=", 0.7),
    (SQLITE, "product read / baseline /hello", "read", "hello", ">=", 0.7),
]


def ratio(num: Endpoint, den: Endpoint) -> float | None:
    """The median over the rounds of num's req/s over den's in the same round."""
    den_rps = {r.round_no: r.rps for r in den.runs}
    ratios = [r.rps / den_rps[r.round_no] for r in num.runs if den_rps.get(r.round_no)]
    return statistics.median(ratios) if ratios else None


def _target(what: str, value: float | None, op: str, target: float) -> None:
    """One target line: the figure, the target and PASS or MISS."""
    if value is None or value != value:
        shown, verdict = "n/a", "n/a"
    else:
        met = {">=": value >= target, "<=": value <= target, "=": value == target}[op]
        shown, verdict = (f"{value:.2f}" if isinstance(value, float) else str(value)), ("PASS" if met else "MISS")
    print(f"    {what:46} {shown:>6}  target {op} {target:<4g} {verdict}")


CPU_HEADER = "".join(f"{h:>7}" for h in ("srv%", "wrk%", "db%", "other%", "idle%"))


def _statuses(counts: Counter, socket_errors: int = 0) -> str:
    text = " ".join(f"{code}:{n}" for code, n in sorted(counts.items()))
    return text + (f" sock-err:{socket_errors}" if socket_errors else "")


def report(header: list[str], endpoints: list[Endpoint], sales: list[dict]) -> list[tuple[str, str, float]]:
    """Print the tables, the flash sale and the targets; returns (config, label, req/s) to plot."""
    print("\n".join(header))
    others = [r.other_cpu for ep in endpoints for r in ep.runs]
    if others and statistics.median(others) > 20:
        print(
            f"NOTE: other processes used a median {statistics.median(others):.0f}% of one core during the runs (max "
            f"{max(others):.0f}%): the machine was shared, so the figures are lower and noisier than on an idle one."
        )
    plotted = []
    for config in (MARIADB, SQLITE):
        rows = [ep for ep in endpoints if ep.config == config]
        by_key = {ep.key: ep for ep in rows}
        print(f"\n{config}")
        print(f"  {'endpoint':44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  {CPU_HEADER} statuses")
        for ep in rows:
            if not ep.runs:
                print(f"  {ep.label:44} {'-':>8} {'-':>8} {'-':>8}  {'':{len(CPU_HEADER)}} NOT MEASURED: {ep.skipped}")
                continue
            plotted.append((config, ep.label, ep.median("rps")))
            cpu = "".join(f"{ep.median(k):7.0f}" for k in ("server_cpu", "wrk_cpu", "db_cpu", "other_cpu", "idle"))
            print(
                f"  {ep.label:44} {ep.median('rps'):8.0f} {ep.median('p50'):8.2f} {ep.median('p99'):8.2f}  "
                f"{cpu} {_statuses(ep.statuses(), sum(r.socket_errors for r in ep.runs))}"
            )
        print("  targets (ratios of req/s, each the median over the rounds of the ratio within a round)")
        for _, what, num, den, op, target in (t for t in TARGETS if t[0] == config):
            _target(what, ratio(by_key[num], by_key[den]), op, target)

    print(f"\n{FLASH}")
    print(
        f"  {'endpoint':44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'201':>6} {'409':>7} {'5xx':>5} "
        f"{'stock left':>10} {'oversold':>8}  books"
    )
    for sale in sales:
        run: Run | None = sale["run"]
        if run is None:
            print(f"  {sale['label']:44} NOT MEASURED: {sale['skipped']}")
            continue
        plotted.append((FLASH, sale["label"], run.rps))
        fives = sum(n for code, n in run.statuses.items() if code >= 500)
        print(
            f"  {sale['label']:44} {run.rps:8.0f} {run.p50:8.2f} {run.p99:8.2f} {run.statuses.get(201, 0):6d} "
            f"{run.statuses.get(409, 0):7d} {fives:5d} {sale['stock_after']!s:>10} {sale['oversold']:8d}  "
            f"{sale['books']}"
        )
        other = {code: n for code, n in run.statuses.items() if code not in (201, 409) and code < 500}
        if other or run.socket_errors:
            print(f"  {'':44} other statuses: {_statuses(Counter(other), run.socket_errors)}")
    stockade, raw = sales[0]["run"], sales[1]["run"]
    print("  targets")
    _target("stockade p99 / raw p99", stockade.p99 / raw.p99 if stockade and raw and raw.p99 else None, "<=", 2)
    _target("stockade units oversold", sales[0]["oversold"] if stockade else None, "=", 0)
    _target(
        "stockade 5xx responses", sum(n for c, n in stockade.statuses.items() if c >= 500) if stockade else None, "=", 0
    )
    _target("stockade books clean (stock 0, 1000 x 201, check)", int(sales[0]["clean"]) if stockade else None, "=", 1)
    return plotted


def plot(rows: list[tuple[str, str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in (MARIADB, SQLITE, FLASH) if any(r[0] == g for r in rows)]
    if not groups:
        return
    heights = [sum(1 for r in rows if r[0] == g) for g in groups]
    fig, axes = plt.subplots(
        len(groups),
        1,
        figsize=(10, 1.2 + 0.42 * sum(heights) + 0.6 * len(groups)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, group in zip(axes[:, 0], groups):
        mine = [r for r in rows if r[0] == group][::-1]
        colors = ["#9e9e9e" if label.startswith("baseline") else "#1f77b4" for _, label, _ in mine]
        bars = ax.barh([label for _, label, _ in mine], [rps for _, _, rps in mine], color=colors)
        ax.bar_label(bars, labels=[f"{rps:.0f}" for _, _, rps in mine], padding=3, fontsize=8)
        ax.set_title(group, fontsize=10, loc="left")
        ax.tick_params(axis="y", labelsize=8)
        ax.margins(x=0.15)
    axes[-1, 0].set_xlabel("requests/s (median of rounds; grey = baseline, blue = Stockade)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def flash_sale(
    label: str,
    server: Server,
    path: str,
    product_id: int,
    seconds: float,
    tmp: Path,
    books: Callable[[], tuple[int | None, int | None, str, bool]],
) -> dict:
    """FLASH_CONNECTIONS buyers of one product with FLASH_STOCK units, then the books:
    `books()` gives (stock left, units ordered if countable, what they say, whether clean)."""
    ep = Endpoint("flash", MARIADB, label, server, path, "POST", {"product_id": product_id, "quantity": 1}, 201)
    log(f"flash sale: {label}, {FLASH_CONNECTIONS} connections, {seconds:g} s")
    try:
        run = wrk(ep, seconds, FLASH_CONNECTIONS, tmp)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return {"label": label, "run": None, "skipped": str(exc)}
    stock, ordered, note, clean = books()
    sold = run.statuses.get(201, 0)
    oversold = max(0, sold - FLASH_STOCK, (ordered or 0) - FLASH_STOCK)
    if stock != 0 and isinstance(stock, int):
        note = (
            f"NOT sold out in {seconds:g} s ({FLASH_STOCK - stock} sold, {sold} of them seen by wrk, the rest "
            f"in flight when it stopped; try a longer --flash-seconds); {note}"
        )
    return {
        "label": label,
        "run": run,
        "stock_after": stock,
        "oversold": oversold,
        "books": note,
        "clean": clean and stock == 0 and sold == FLASH_STOCK and oversold == 0,
    }


def add_server_arguments(parser: argparse.ArgumentParser, redis_help: str) -> None:
    """--mysql-url and --redis-url, with their STOCKADE_BENCH_* defaults (bench.py and drain.py)."""
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("STOCKADE_BENCH_MYSQL_URL"),
        help="a MySQL/MariaDB database to use (default: a scratch database on 127.0.0.1, root)",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("STOCKADE_BENCH_REDIS_URL", "redis://127.0.0.1:6379"), help=redis_help
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s per endpoint")
    parser.add_argument("--seconds", type=float, default=5, help="wrk duration per endpoint and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--flash-seconds", type=float, default=10, help="length of each flash sale")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "results.png")
    add_server_arguments(parser, "a Redis server (a free db is leased and flushed) or redis://HOST:PORT/N")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.flash_seconds = 2, 1, 3
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed; `apt-get install wrk` (or brew install wrk), then rerun.")

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stockade-bench-")))
        mysql_url, mysql_about = stack.enter_context(mysql_database(args.mysql_url, MYSQL_DB))
        redis_url = stack.enter_context(redis_db(args.redis_url))
        env_mysql = {
            **STOCKADE_ENV,
            "STOCKADE_DATABASE_URL": mysql_url,
            "STOCKADE_REDIS_URL": redis_url,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics-mariadb"),
        }
        env_sqlite = {
            **STOCKADE_ENV,
            "STOCKADE_DATABASE_URL": f"sqlite:///{tmp}/stockade.db",
            "STOCKADE_REDIS_URL": "",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics-sqlite"),
        }
        for env in (env_mysql, env_sqlite):
            os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"])
        log("stockade migrate (MariaDB scratch database)")
        migrated = stockade_cli(env_mysql, "migrate")
        if migrated.returncode != 0:
            raise SystemExit(
                f"bench: `stockade migrate` failed on {mysql_url}:\n{migrated.stderr.strip()}\n"
                "Fix the schema or the migration, then rerun."
            )
        raw_ids = baselines.prepare(mysql_url, str(tmp / "raw.db"), {"plenty": PLENTY, "flash": FLASH_STOCK})

        base = Server(
            "baselines",
            [
                sys.executable,
                str(Path(__file__).with_name("baselines.py")),
                "--mysql-url",
                mysql_url,
                "--sqlite",
                str(tmp / "raw.db"),
            ],
            {},
            "/hello",
            tmp,
        )
        on_mysql = Server("stockade-mariadb", [STOCKADE, "serve"], env_mysql, "/healthz", tmp)
        on_sqlite = Server("stockade-sqlite", [STOCKADE, "serve"], env_sqlite, "/healthz", tmp)
        servers = [base, on_mysql, on_sqlite]

        @stack.callback
        def stop_all() -> None:
            for server in servers:
                server.stop()
            for server in servers:
                server.wait_stopped()

        log("starting servers: " + ", ".join(s.name for s in servers))
        try:
            for server in servers:
                server.start()
            for server in servers:
                server.wait()
            buy_raw = {"product_id": raw_ids["mysql"]["plenty"], "quantity": 1}
            raw = Endpoint(
                "raw", MARIADB, "baseline raw purchase (1 round trip)", base, "/raw/purchase", "POST", buy_raw, 201
            )
            naive = Endpoint(
                "naive", MARIADB, "baseline naive purchase (FOR UPDATE)", base, "/naive/purchase", "POST", buy_raw, 201
            )
            raw_sqlite = Endpoint(
                "raw_sqlite",
                SQLITE,
                "baseline raw-sqlite purchase",
                base,
                "/raw-sqlite/purchase",
                "POST",
                {"product_id": raw_ids["sqlite"]["plenty"], "quantity": 1},
                201,
            )
            # Each endpoint right after the one it is compared with (see the docstring).
            endpoints = []
            for config, raw_purchase, stockade in (
                (MARIADB, raw, stockade_endpoints(MARIADB, on_mysql)),
                (SQLITE, raw_sqlite, stockade_endpoints(SQLITE, on_sqlite)),
            ):
                endpoints += [
                    Endpoint("hello", config, "baseline GET /hello", base, "/hello"),
                    *(stockade[key] for key in ("sold_out", "read", "healthz")),
                    raw_purchase,
                    *(stockade[key] for key in ("purchase", "purchase_key", "purchase_limited")),
                    *([naive] if config == MARIADB else []),
                    stockade["hold"],
                ]
        except ServerFailed as exc:
            raise SystemExit(
                f"bench: cannot run: {exc}\nFix the server (its log is above), then rerun "
                "`make bench` (try `make bench BENCH_ARGS=--quick` for a short check)."
            ) from None

        for ep in endpoints:
            if not ep.skipped:
                ep.probe()
            if ep.skipped:
                log(f"  skipping {ep.config}: {ep.label}: {ep.skipped}\n  {ep.server.log_tail(10)}")
        started = time.monotonic()
        for round_no in range(1, args.rounds + 1):
            for ep in endpoints:
                if ep.skipped:
                    continue
                try:
                    if round_no == 1:
                        wrk(ep, 1, CONNECTIONS, tmp)  # warm-up: connection pools, caches
                    run = wrk(ep, args.seconds, CONNECTIONS, tmp)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    ep.skipped = f"wrk failed: {exc}"
                    log(f"  {ep.label}: {ep.skipped}")
                    continue
                run.round_no = round_no
                ep.runs.append(run)
                log(
                    f"[round {round_no}/{args.rounds}] {ep.config}: {ep.label}: {run.rps:.0f} req/s, "
                    f"p99 {run.p99:.1f} ms, {_statuses(run.statuses, run.socket_errors)}"
                )

        def stockade_books() -> tuple[int | None, None, str, bool]:
            _, product = call(f"{on_mysql.url}/api/products/{flash_id}")
            check = stockade_cli(env_mysql, "check")
            if check.returncode != 0:
                log(check.stdout + check.stderr)
            summary = (check.stdout.strip().splitlines() or ["(no output)"])[-1].removeprefix("stockade check: ")
            clean = check.returncode == 0
            return (
                product.get("data", {}).get("stock"),
                None,
                f"stockade check {'clean' if clean else 'DRIFT'} ({summary})",
                clean,
            )

        def raw_books() -> tuple[int, int, str, bool]:
            stock, ordered = baselines.mysql_sales(mysql_url, raw_ids["mysql"]["flash"])
            return stock, ordered, f"{ordered} units in bench_orders", True

        try:
            flash_id = create_product(on_mysql, "bench flash sale", FLASH_STOCK)
            stockade_sale = flash_sale(
                "stockade purchase", on_mysql, "/api/orders/purchase", flash_id, args.flash_seconds, tmp, stockade_books
            )
        except ServerFailed as exc:
            stockade_sale = {"label": "stockade purchase", "run": None, "skipped": f"no product to sell: {exc}"}
        sales = [
            stockade_sale,
            flash_sale(
                "baseline raw purchase (1 round trip)",
                base,
                "/raw/purchase",
                raw_ids["mysql"]["flash"],
                args.flash_seconds,
                tmp,
                raw_books,
            ),
        ]
        measured = time.monotonic() - started
        classes = ", ".join(f"{s.name} {s.worker_class()}" for s in servers)

    header = [
        f"Stockade benchmark: wrk -t2 -c{CONNECTIONS} --latency, {args.rounds} round(s) x {args.seconds:g} s per "
        f"endpoint, endpoints interleaved, median of the rounds ({measured:.0f} s of load).",
        f"Servers: stockade.entrypoints.gunicorn_app.serve with --workers {WORKERS} each; gunicorn worker class "
        f"(from their logs): {classes}.",
        f"MariaDB {mysql_about}; SQLite in WAL mode, synchronous=FULL; {os.cpu_count()} CPUs shared by "
        "wrk and the servers.",
        "Stockade runs with STOCKADE_ORDER_PROCESSING_SECONDS=3600 (and hold TTL and outbox retry at 3600 s), so that "
        "background order processing does not compete with the measured requests.",
        f"CPU during each run, in % of one core ({os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}%): srv the "
        "measured server's processes, wrk, db MariaDB + Redis, other everything else (idle servers, other people's "
        "work), idle.",
    ]
    plotted = report(header, endpoints, sales)
    plot(
        plotted,
        args.plot,
        header[0].split(":")[0] + f" ({args.rounds} x {args.seconds:g} s, -c{CONNECTIONS}, --workers {WORKERS})",
    )
    log(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
