"""Starting the `stockade` commands: clear one-line failures, exit codes, serialized migrations."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.distributed_helpers import (
    STOCKADE_BIN,
    free_port,
    spawn_stockade,
    stockade_env,
    stop_process_group,
    wait_for,
)

#: Nothing listens there: a MySQL server that does not answer. The password must never show.
DEAD_MYSQL_URL = "mysql+pymysql://stockade:hunter2-secret@127.0.0.1:1/stockade"
#: Seconds a one-shot command may take beyond its startup timeout (interpreter start, imports).
SLACK_SECONDS = 20
#: Concurrent processes in the migration races.
RACERS = 8


def run(args: list[str], cwd: Path, timeout: float = 60, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [STOCKADE_BIN, *args], env=stockade_env(**variables), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_failure(result: subprocess.CompletedProcess, *expected: str) -> str:
    """No traceback, no password, and a last line that says what was tried and what to do."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert "hunter2" not in output, output
    last = result.stderr.strip().splitlines()[-1]
    for text in expected:
        assert text in last, output
    return last


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'stockade.db'}"


# ---------------------------------------------------------------- exit codes and one-line failures


@pytest.mark.parametrize(
    "command",
    [
        ["seed"],
        ["holds", "release-expired"],
        ["migrate"],
        ["check"],
        ["worker"],
        ["beat"],
        ["serve-tasks", "--port", "1"],
    ],
)
def test_a_database_that_does_not_answer_is_retried_until_the_startup_timeout_then_one_line(tmp_path, command):
    started = time.monotonic()
    result = run(
        command,
        tmp_path,
        STOCKADE_DATABASE_URL=DEAD_MYSQL_URL,
        STOCKADE_STARTUP_TIMEOUT_SECONDS="2",
        STOCKADE_BROKER_URL="redis://127.0.0.1:1/0",
    )
    took = time.monotonic() - started

    assert result.returncode == (2 if command == ["check"] else 1), result.stderr
    assert 2 <= took < 2 + SLACK_SECONDS
    last = assert_one_line_failure(result, "did not answer within 2 s", "stockade:***@127.0.0.1:1")
    assert "STOCKADE_STARTUP_TIMEOUT_SECONDS" in last
    retries = [line for line in result.stderr.splitlines() if "retrying" in line]
    assert len(retries) >= 2, result.stderr  # one line per attempt


def test_check_exits_0_when_clean_and_1_naming_the_product_that_drifted(tmp_path):
    url = sqlite_url(tmp_path)
    assert run(["seed"], tmp_path, STOCKADE_DATABASE_URL=url).returncode == 0
    clean = run(["check"], tmp_path, STOCKADE_DATABASE_URL=url)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE products SET reserved = 1"))
    engine.dispose()
    drifted = run(["check"], tmp_path, STOCKADE_DATABASE_URL=url)

    assert drifted.returncode == 1
    assert "DRIFT product 1 (Laptop Gaming)" in drifted.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STOCKADE_DATABASE_URL", "not a url"),
        ("STOCKADE_DATABASE_URL", "postgresql://db/stockade"),
        ("STOCKADE_REDIS_URL", "http://127.0.0.1:6379/0"),
        ("STOCKADE_BROKER_URL", "redis//missing-colon"),
        ("STOCKADE_HOLD_TTL_SECONDS", "two minutes"),
    ],
)
@pytest.mark.parametrize("command", [["check"], ["seed"], ["serve"]])
def test_a_bad_setting_exits_2_at_once_naming_that_variable(tmp_path, command, variable, value):
    started = time.monotonic()
    result = run(command, tmp_path, timeout=SLACK_SECONDS, **{variable: value})

    assert result.returncode == 2
    assert time.monotonic() - started < SLACK_SECONDS
    last = assert_one_line_failure(result, f"configuration error: {variable}")
    others = {"STOCKADE_DATABASE_URL", "STOCKADE_REDIS_URL", "STOCKADE_BROKER_URL"} - {variable}
    assert not any(other in last for other in others), last


def test_serve_refuses_zero_workers(tmp_path):
    result = run(["serve", "--workers", "0"], tmp_path, timeout=SLACK_SECONDS)

    assert result.returncode == 2
    assert "--workers: 0 is too small; use 1 or more" in result.stderr


def test_production_refuses_to_serve_with_a_secret_shorter_than_32_characters(tmp_path):
    result = run(
        ["serve", "--port", str(free_port())],
        tmp_path,
        timeout=SLACK_SECONDS,
        STOCKADE_DATABASE_URL=sqlite_url(tmp_path),
        STOCKADE_ENV="production",
        STOCKADE_ADMIN_TOKEN="x" * 32,
        STOCKADE_WEBHOOK_SECRET="x" * 31,
    )

    assert result.returncode == 2
    assert_one_line_failure(result, "STOCKADE_WEBHOOK_SECRET has 31 characters", "at least 32")


def test_the_version_is_printed():
    result = subprocess.run([STOCKADE_BIN, "--version"], capture_output=True, text=True, timeout=SLACK_SECONDS)

    assert result.returncode == 0
    assert result.stdout.startswith("stockade 0.")


# ---------------------------------------------------------------- serve


def wait_for_exit(proc: subprocess.Popen, seconds: float) -> int:
    try:
        return proc.wait(seconds)
    finally:
        stop_process_group(proc)


def test_serve_with_an_unparseable_database_url_exits_2_instead_of_respawning_workers(tmp_path):
    log = tmp_path / "serve.log"
    proc = spawn_stockade(
        ["serve", "--port", str(free_port())],
        stockade_env(STOCKADE_DATABASE_URL="mysql+pymysql://root@:bad-port/x"),
        log,
    )

    assert wait_for_exit(proc, SLACK_SECONDS) == 2
    output = log.read_text()
    assert "Booting worker" not in output and "Traceback" not in output, output
    assert "STOCKADE_DATABASE_URL" in output


def test_serve_with_a_database_that_does_not_answer_exits_1_within_the_startup_timeout(tmp_path):
    log = tmp_path / "serve.log"
    proc = spawn_stockade(
        ["serve", "--port", str(free_port())],
        stockade_env(STOCKADE_DATABASE_URL=DEAD_MYSQL_URL, STOCKADE_STARTUP_TIMEOUT_SECONDS="2"),
        log,
    )

    assert wait_for_exit(proc, 2 + SLACK_SECONDS) == 1
    output = log.read_text()
    assert "Traceback" not in output and "hunter2" not in output, output
    assert "serving" not in output, output
    assert "did not answer within 2 s" in output.strip().splitlines()[-1]


def test_serve_prints_its_banner_only_once_it_listens(tmp_path):
    taken = socket_listening()
    port = taken.getsockname()[1]
    log = tmp_path / "serve.log"
    try:
        proc = spawn_stockade(
            ["serve", "--port", str(port)], stockade_env(STOCKADE_DATABASE_URL=sqlite_url(tmp_path)), log
        )
        assert wait_for_exit(proc, 2 * SLACK_SECONDS) != 0
    finally:
        taken.close()
    output = log.read_text()
    assert "Connection in use" in output, output
    assert "stockade: serving" not in output, output


def socket_listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


# ---------------------------------------------------------------- a database without the schema


def test_an_unmigrated_mysql_database_is_reported_as_run_stockade_migrate(tmp_path, mysql_url):
    port = free_port()
    log = tmp_path / "serve.log"
    proc = spawn_stockade(["serve", "--port", str(port)], stockade_env(STOCKADE_DATABASE_URL=mysql_url), log)
    try:
        wait_for(lambda: _answers(port), "stockade serve listening", timeout=60)
        ready_status, ready = get(port, "/readyz")
        products_status, products = get(port, "/api/products")
    finally:
        stop_process_group(proc)

    assert ready_status == 503 and "run `stockade migrate`" in ready["message"], ready
    assert products_status == 503 and "run `stockade migrate`" in products["message"], products
    output = log.read_text()
    assert "run `stockade migrate`" in output and "Traceback" not in output, output

    seed = run(["seed"], tmp_path, STOCKADE_DATABASE_URL=mysql_url)
    assert seed.returncode == 1
    assert_one_line_failure(seed, "run `stockade migrate`")
    assert run(["check"], tmp_path, STOCKADE_DATABASE_URL=mysql_url).returncode == 2


def _answers(port: int) -> bool:
    try:
        get(port, "/healthz")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- serialized migrations


def start_racers(args: list[str], tmp_path: Path, url: str) -> list[tuple[subprocess.Popen, Path]]:
    racers = []
    for i in range(RACERS):
        log = tmp_path / f"migrate-{i}.log"
        racers.append((spawn_stockade(args, stockade_env(STOCKADE_DATABASE_URL=url), log), log))
    return racers


def assert_all_migrated(racers: list[tuple[subprocess.Popen, Path]]) -> None:
    for proc, log in racers:
        code = wait_for_exit(proc, 120)
        assert code == 0, log.read_text()
        assert "is at the latest version" in log.read_text()


def test_many_migrates_at_once_on_a_fresh_mysql_database_all_succeed(tmp_path, mysql_url):
    assert_all_migrated(start_racers(["migrate"], tmp_path, mysql_url))

    engine = sa.create_engine(mysql_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_many_migrates_at_once_on_a_fresh_sqlite_file_all_succeed(tmp_path):
    assert_all_migrated(start_racers(["migrate"], tmp_path, sqlite_url(tmp_path)))


def test_serve_and_serve_tasks_started_together_on_a_fresh_sqlite_file_both_serve(tmp_path):
    env = stockade_env(STOCKADE_DATABASE_URL=sqlite_url(tmp_path))
    api_port, tasks_port = free_port(), free_port()
    api = spawn_stockade(["serve", "--port", str(api_port)], env, tmp_path / "api.log")
    tasks = spawn_stockade(["serve-tasks", "--port", str(tasks_port)], env, tmp_path / "tasks.log")
    try:
        wait_for(lambda: _answers(api_port) or api.poll() is not None, "the API answering", timeout=60)
        wait_for(lambda: _tasks_answer(tasks_port) or tasks.poll() is not None, "the task API answering", timeout=60)
        assert api.poll() is None, (tmp_path / "api.log").read_text()
        assert tasks.poll() is None, (tmp_path / "tasks.log").read_text()
        assert get(api_port, "/readyz")[0] == 200
    finally:
        stop_process_group(api)
        stop_process_group(tasks)


def _tasks_answer(port: int) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/tasks/order-processed", data=b"{}", method="POST")
    try:
        urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as exc:
        return exc.code == 400  # {"error": "order_id is required"}: it answers
    except OSError:
        return False
    return False


def test_serve_with_several_workers_leaves_no_metrics_folder_behind(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    proc = spawn_stockade(
        ["serve", "--port", str(port), "--workers", "2"],
        stockade_env(STOCKADE_DATABASE_URL=sqlite_url(tmp_path), TMPDIR=str(temp)),
        tmp_path / "serve.log",
    )
    try:
        wait_for(lambda: _answers(port), "stockade serve answering", timeout=60)
        assert [p.name for p in temp.iterdir() if p.name.startswith("stockade-metrics-")]
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
    finally:
        stop_process_group(proc)

    assert not [p.name for p in temp.iterdir() if p.name.startswith("stockade-metrics-")]
