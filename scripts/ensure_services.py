#!/usr/bin/env python3
"""Make sure a MySQL-compatible server and Redis answer before the integration tests run.

For each service, in order of preference:
  a. the URL in STOCKADE_TEST_MYSQL_URL / STOCKADE_TEST_REDIS_URL: only check that it answers;
  b. a Docker engine that answers: do nothing, the pytest fixtures start testcontainers;
  c. the local server on 127.0.0.1:3306 / :6379: start it (installing it with apt-get when
     running as root and it is missing) and wait for it to answer.

Under CI=true a service that does not answer is a hard failure (exit 1); otherwise a loud
warning is printed and the integration fixtures will skip. Nothing is exported: the
fixtures in tests/integration/conftest.py find the same servers by the same rules.
Stdlib only (pymysql is used for the MySQL login when it is importable, as in the venv).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from urllib.parse import unquote, urlsplit

MYSQL_ENV = "STOCKADE_TEST_MYSQL_URL"
REDIS_ENV = "STOCKADE_TEST_REDIS_URL"
LOCAL_MYSQL_URL = "mysql+pymysql://root:@127.0.0.1:3306/test"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
WAIT_SECONDS = 30

MARIADB_BIN = "/usr/sbin/mariadbd"
MARIADB_START = ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", MARIADB_BIN]


def redis_start_cmd() -> list[str]:
    """The redis-server command line; falls back to a temp dir when /var/lib/redis is not writable."""
    data_dir = "/var/lib/redis" if os.access("/var/lib/redis", os.W_OK) else tempfile.gettempdir()
    log_dir = "/var/log/redis" if os.access("/var/log/redis", os.W_OK) else data_dir
    # No persistence: test data is throwaway and the contract says Redis may lose everything.
    return [
        "redis-server",
        "--daemonize",
        "yes",
        "--bind",
        "127.0.0.1",
        "-::1",
        "--port",
        "6379",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        data_dir,
        "--logfile",
        os.path.join(log_dir, "ci.log"),
    ]


MARIADB_HINT = (
    f"set {MYSQL_ENV}=mysql+pymysql://USER:PASSWORD@HOST:3306/DB to a server you run, "
    "or start a local MariaDB as root with: mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld && "
    f"{' '.join(MARIADB_START)} (install it with: apt-get update && apt-get install -y mariadb-server)"
)
REDIS_HINT = (
    f"set {REDIS_ENV}=redis://HOST:6379/0 to a server you run, or start a local Redis with: "
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log "
    "(install it with: apt-get update && apt-get install -y redis-server)"
)


def in_ci() -> bool:
    """True when running under CI, where a missing server must fail instead of skip."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def say(msg: str) -> None:
    """Progress line, flushed at once so make shows it in order with other output."""
    print(msg, flush=True)


def redact(url: str) -> str:
    """The URL with its password hidden, for printing."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
    return url


# ---------------------------------------------------------------- probes


def tcp_open(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when something accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def mysql_check(url: str) -> str | None:
    """None when a real login to the URL's server and database works, else the reason it failed."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 3306
    if not tcp_open(host, port):
        return f"nothing accepts TCP connections on {host}:{port}"
    try:
        import pymysql  # in the venv; the TCP probe above is all we can do without it
    except ImportError:
        return None
    try:
        conn = pymysql.connect(
            host=host,
            port=port,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=unquote(parts.path.lstrip("/")) or None,
            connect_timeout=5,
            read_timeout=5,
            write_timeout=5,
        )
    except pymysql.err.MySQLError as exc:
        return f"login to {host}:{port} failed: {exc}"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        conn.close()
    return None


def redis_check(url: str) -> str | None:
    """None when the server answers PING (after AUTH if the URL has credentials), else why not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379

    def command(sock: socket.socket, *args: str) -> bytes:
        # RESP array of bulk strings: the one encoding every Redis version accepts.
        payload = f"*{len(args)}\r\n".encode()
        for arg in args:
            raw = arg.encode()
            payload += b"$%d\r\n%s\r\n" % (len(raw), raw)
        sock.sendall(payload)
        return sock.recv(4096)

    try:
        sock = socket.create_connection((host, port), timeout=3)
    except OSError as exc:
        return f"nothing accepts TCP connections on {host}:{port} ({exc.strerror or exc})"
    try:
        if parts.scheme == "rediss":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        if parts.password:
            auth = [unquote(parts.username), unquote(parts.password)] if parts.username else [unquote(parts.password)]
            reply = command(sock, "AUTH", *auth)
            if not reply.startswith(b"+OK"):
                return f"AUTH on {host}:{port} failed: {reply.strip().decode(errors='replace')}"
        reply = command(sock, "PING")
        if not reply.startswith(b"+PONG"):
            return f"PING on {host}:{port} got {reply.strip().decode(errors='replace')!r}"
        return None
    except OSError as exc:
        return f"talking to {host}:{port} failed: {exc}"
    finally:
        sock.close()


def docker_answers() -> bool:
    """True when a Docker engine answers `docker info` within a few seconds."""
    if not shutil.which("docker"):
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=8
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


# ---------------------------------------------------------------- local servers


def run(cmd: list[str], timeout: float = 600) -> bool:
    """Run a command, showing its output; True when it exits 0."""
    say(f"  $ {shlex.join(cmd)}")
    try:
        return subprocess.run(cmd, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        say(f"  ! {exc}")
        return False


_apt_updated = False


def apt_install(package: str) -> bool:
    """Install a Debian package, only when we are root and apt-get exists."""
    global _apt_updated
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        say(f"  ! cannot install {package}: needs root and apt-get")
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        say("  installing with apt-get (this takes a minute)")
        _apt_updated = subprocess.run(["apt-get", "update", "-q"], env=env).returncode == 0
    say(f"  $ apt-get install -y {package}")
    return subprocess.run(["apt-get", "install", "-y", "-q", package], env=env).returncode == 0


def wait_for(name: str, check, url: str) -> str | None:
    """Poll check(url) for up to WAIT_SECONDS, printing progress; the last failure or None."""
    deadline = time.monotonic() + WAIT_SECONDS
    last_print = 0.0
    while True:
        problem = check(url)
        if problem is None or time.monotonic() >= deadline:
            return problem
        if time.monotonic() - last_print >= 5:
            say(f"  waiting for {name} to answer ({problem})")
            last_print = time.monotonic()
        time.sleep(0.5)


def start_mariadb() -> bool:
    """Start the local MariaDB, installing it first when the binary is missing."""
    if not os.path.exists(MARIADB_BIN) and not apt_install("mariadb-server"):
        return False
    # The Debian package's service dir lives on tmpfs and vanishes on reboot / fresh containers.
    try:
        os.makedirs("/run/mysqld", exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown("/run/mysqld", "mysql", "mysql")
    except (OSError, LookupError) as exc:
        say(f"  ! preparing /run/mysqld: {exc}")
    if shutil.which("start-stop-daemon"):
        return run(MARIADB_START)
    # No start-stop-daemon (not Debian): detach the server ourselves.
    say(f"  $ {MARIADB_BIN} --user=mysql &")
    subprocess.Popen(
        [MARIADB_BIN, "--user=mysql"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return True


def provision_local_mysql() -> bool:
    """Let root log in over TCP with an empty password and create `test`.

    A fresh Debian MariaDB authenticates root@localhost by unix socket only, so the
    TCP login the tests use fails; the OS root user can fix that through the socket.
    """
    client = shutil.which("mariadb") or shutil.which("mysql")
    if os.geteuid() != 0 or not client:
        return False
    sql = (
        "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; "
        "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; "
        "CREATE DATABASE IF NOT EXISTS test; FLUSH PRIVILEGES;"
    )
    say("  granting root@127.0.0.1 (empty password) and creating database `test` via the unix socket")
    return run([client, "-uroot", "-e", sql], timeout=30)


def start_redis() -> bool:
    """Start the local Redis, installing it first when the binary is missing."""
    if not shutil.which("redis-server") and not apt_install("redis-server"):
        return False
    return run(redis_start_cmd())


# ---------------------------------------------------------------- per service


def ensure_mysql(docker: bool) -> str | None:
    """Settle the MySQL choice; None when fine, else a message saying what failed."""
    env_url = os.environ.get(MYSQL_ENV)
    if env_url:
        problem = mysql_check(env_url)
        if problem:
            return f"{MYSQL_ENV}={redact(env_url)} does not answer: {problem}"
        say(f"mysql: {MYSQL_ENV} {redact(env_url)} (answers)")
        return None
    if docker:
        say("mysql: Docker engine answers; the pytest fixtures will start testcontainers mysql:8.0.36")
        return None
    problem = mysql_check(LOCAL_MYSQL_URL)
    if problem is None:
        say("mysql: local server 127.0.0.1:3306 (already running)")
        return None
    started = False
    if not tcp_open("127.0.0.1", 3306):
        say(f"mysql: local server 127.0.0.1:3306 does not answer ({problem}); starting it")
        if not start_mariadb():
            return f"could not start a local MariaDB ({problem})"
        started = True
        # Wait for the port, not the login: a fresh install still needs provisioning below.
        wait_for("MariaDB", lambda _url: None if tcp_open("127.0.0.1", 3306) else "port closed", LOCAL_MYSQL_URL)
        problem = mysql_check(LOCAL_MYSQL_URL)
    if problem and tcp_open("127.0.0.1", 3306) and provision_local_mysql():
        problem = mysql_check(LOCAL_MYSQL_URL)
    if problem:
        return f"local MariaDB on 127.0.0.1:3306 does not answer: {problem}"
    say(f"mysql: local server 127.0.0.1:3306 ({'started' if started else 'provisioned'})")
    return None


def ensure_redis(docker: bool) -> str | None:
    """Settle the Redis choice; None when fine, else a message saying what failed."""
    env_url = os.environ.get(REDIS_ENV)
    if env_url:
        problem = redis_check(env_url)
        if problem:
            return f"{REDIS_ENV}={redact(env_url)} does not answer: {problem}"
        say(f"redis: {REDIS_ENV} {redact(env_url)} (answers)")
        return None
    if docker:
        say("redis: Docker engine answers; the pytest fixtures will start testcontainers redis:7.2-alpine")
        return None
    problem = redis_check(LOCAL_REDIS_URL)
    if problem is None:
        say("redis: local server 127.0.0.1:6379 (already running)")
        return None
    say(f"redis: local server 127.0.0.1:6379 does not answer ({problem}); starting it")
    if not start_redis():
        return f"could not start a local Redis ({problem})"
    problem = wait_for("Redis", redis_check, LOCAL_REDIS_URL)
    if problem:
        return f"local Redis on 127.0.0.1:6379 does not answer: {problem}"
    say("redis: local server 127.0.0.1:6379 (started)")
    return None


def main() -> int:
    """Check both services; exit 1 under CI when one is missing, else warn and exit 0."""
    # Docker only matters when an env URL does not already decide the service.
    need_docker = not (os.environ.get(MYSQL_ENV) and os.environ.get(REDIS_ENV))
    docker = need_docker and docker_answers()
    if need_docker and not docker:
        say("docker: no Docker engine answers; using local servers")

    failures = []
    if (problem := ensure_mysql(docker)) is not None:
        hint = (
            f"point {MYSQL_ENV} at a server that answers, or unset it to use Docker / the local MariaDB"
            if os.environ.get(MYSQL_ENV)
            else MARIADB_HINT
        )
        failures.append(("mysql", problem, hint))
    if (problem := ensure_redis(docker)) is not None:
        hint = (
            f"point {REDIS_ENV} at a server that answers, or unset it to use Docker / the local Redis"
            if os.environ.get(REDIS_ENV)
            else REDIS_HINT
        )
        failures.append(("redis", problem, hint))
    if not failures:
        return 0

    bar = "!" * 78
    print(bar, file=sys.stderr)
    for name, problem, hint in failures:
        print(f"{name}: FAILED: {problem}", file=sys.stderr)
        print(f"  to fix: {hint}", file=sys.stderr)
    if in_ci():
        print("CI=true: refusing to run the integration tests without their servers.", file=sys.stderr)
        print(bar, file=sys.stderr)
        return 1
    print(
        "WARNING: integration tests that need these servers will be SKIPPED (set CI=true to make this an error).",
        file=sys.stderr,
    )
    print(bar, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
