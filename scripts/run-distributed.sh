#!/usr/bin/env bash
# Run the distributed Stockade stack on this machine, without Docker, against
# MySQL and Redis servers that are already running: the same processes as
# docker-compose.yml (migrate, two API processes, the internal task API, a
# Celery worker and beat), each one's output prefixed with its name.
#
# Usage: scripts/run-distributed.sh        (Ctrl-C stops everything)
#
# Environment, all optional:
#   STOCKADE_DATABASE_URL   default mysql+pymysql://root:@127.0.0.1:3306/stockade
#                           (the database is created if missing)
#   STOCKADE_REDIS_URL      default redis://127.0.0.1:6379/0
#   STOCKADE_BROKER_URL     default redis://127.0.0.1:6379/1
#   STOCKADE_PORT           public API port, default 8000
#   STOCKADE_TASKS_PORT     internal task API port, default 5000
#   STOCKADE_SEED           1 (default) runs `stockade seed` after migrating; 0 skips it
#   STOCKADE_STOP_TIMEOUT   seconds to let processes stop gracefully before they
#                           are killed, default 15 (a second Ctrl-C kills at once)
#   STOCKADE_BIN            the stockade executable, default .venv/bin/stockade.
#                           Point it at a stub to try this script without the app.
#   STOCKADE_PYTHON         interpreter with pymysql and SQLAlchemy, used to create
#                           the database, default .venv/bin/python
# Every other STOCKADE_* variable of the contract (STOCKADE_HOLD_TTL_SECONDS, ...)
# is passed through to every process unchanged.
#
# If any process exits, the others are stopped and the script exits non-zero.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Relative paths (a sqlite URL) then land in the repo,
# as they do with `make run`.
cd "$ROOT"

log() { printf '[run-distributed] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

export STOCKADE_DATABASE_URL="${STOCKADE_DATABASE_URL:-mysql+pymysql://root:@127.0.0.1:3306/stockade}"
export STOCKADE_REDIS_URL="${STOCKADE_REDIS_URL:-redis://127.0.0.1:6379/0}"
export STOCKADE_BROKER_URL="${STOCKADE_BROKER_URL:-redis://127.0.0.1:6379/1}"

STOCKADE_BIN="${STOCKADE_BIN:-$ROOT/.venv/bin/stockade}"
STOCKADE_PYTHON="${STOCKADE_PYTHON:-$ROOT/.venv/bin/python}"
API_PORT="${STOCKADE_PORT:-8000}"
TASKS_PORT="${STOCKADE_TASKS_PORT:-5000}"
SEED="${STOCKADE_SEED:-1}"
STOP_TIMEOUT="${STOCKADE_STOP_TIMEOUT:-15}"

for var in STOCKADE_PORT STOCKADE_TASKS_PORT STOCKADE_STOP_TIMEOUT; do
    [[ ${!var:-0} =~ ^[0-9]+$ ]] || die "$var must be a number, got '${!var}'"
done

[[ -x $STOCKADE_BIN ]] ||
    die "$STOCKADE_BIN not found: run 'make install' (or 'make run') first to create the virtualenv"

# Never print a password to the terminal (or to whoever reads its scrollback).
redact() { sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }

# ---------------------------------------------------------------------------
# Process bookkeeping. Each service runs as a pipeline `stockade ... | sed` in
# its own process group, whose id is the stockade process's pid (the first
# process of a pipeline leads its group). That gives one handle for the
# graceful stop (TERM to stockade itself, which lets gunicorn's master and
# Celery stop their children in order) and one for the final sweep (KILL to
# the whole group: stockade, anything it forked, and the sed).
names=()
pgids=()
stopping=0
hurry=0

group_alive() { kill -0 -- "-$1" 2>/dev/null; }

any_group_alive() {
    local pgid
    for pgid in "${pgids[@]}"; do
        group_alive "$pgid" && return 0
    done
    return 1
}

stop_all() {
    ((stopping)) && return 0
    stopping=1
    # A second Ctrl-C during the graceful stop means: do not wait.
    trap 'hurry=1' INT TERM HUP
    ((${#pgids[@]})) || return 0

    log "stopping: ${names[*]}"
    local pgid
    for pgid in "${pgids[@]}"; do
        kill -TERM "$pgid" 2>/dev/null || true
    done
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while any_group_alive && ((SECONDS < deadline && !hurry)); do
        # A second Ctrl-C kills this sleep too; that must not end the script
        # (set -e) before the KILL below.
        sleep 0.2 || true
    done
    # Whatever is left: a process that ignored TERM, a child that outlived its
    # parent, a sed still draining.
    local i
    for i in "${!pgids[@]}"; do
        if group_alive "${pgids[$i]}"; then
            log "${names[$i]} still running; killing it"
            kill -KILL -- "-${pgids[$i]}" 2>/dev/null || true
        fi
    done
    # Reap, without bash's own "Killed ..." job notices: the line above said it.
    wait 2>/dev/null || true
    log "all stopped"
}

trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all; exit 129' HUP
trap 'stop_all' EXIT

# start NAME ARGS...: run `stockade ARGS...` in the background, in its own
# process group, its output prefixed with [NAME].
start() {
    local name=$1
    shift
    # Job control only while forking: it is what gives the pipeline its own
    # group. Foreground commands afterwards stay in the script's group, so a
    # terminal Ctrl-C reaches the script (whose trap stops the services in
    # order) and not the services directly.
    set -m
    "$STOCKADE_BIN" "$@" </dev/null 2>&1 | sed -u "s/^/[$name] /" &
    pgids+=("$(jobs -p %+)")
    set +m
    names+=("$name")
}

# run_once NAME ARGS...: run `stockade ARGS...` in the foreground, prefixed.
run_once() {
    local name=$1
    shift
    "$STOCKADE_BIN" "$@" </dev/null 2>&1 | sed -u "s/^/[$name] /"
}

# ---------------------------------------------------------------------------
create_mysql_database() {
    [[ -x $STOCKADE_PYTHON ]] ||
        die "$STOCKADE_PYTHON not found: run 'make install' (or 'make run') first to create the virtualenv"
    # The schema migration needs the database to exist; MySQL cannot be asked
    # to create it through a URL that already names it.
    # shellcheck disable=SC2016  # Python source: the backticks are MySQL quoting
    "$STOCKADE_PYTHON" -c '
import os
import sys

import pymysql
from sqlalchemy.engine import make_url

url = make_url(os.environ["STOCKADE_DATABASE_URL"])
if not url.database:
    sys.exit("[run-distributed] error: STOCKADE_DATABASE_URL names no database")
params = {"user": url.username or "root", "password": url.password or "", "connect_timeout": 5}
if "unix_socket" in url.query:
    params["unix_socket"] = url.query["unix_socket"]
else:
    params.update(host=url.host or "127.0.0.1", port=url.port or 3306)
try:
    conn = pymysql.connect(**params)
except pymysql.err.MySQLError as exc:
    sys.exit(
        f"[run-distributed] error: cannot connect to {url.render_as_string(hide_password=True)}: {exc}\n"
        "[run-distributed] is the MySQL server running? (or set STOCKADE_DATABASE_URL)"
    )
try:
    with conn.cursor() as cur:
        # utf8mb4 without naming a collation: MariaDB has no utf8mb4_0900_ai_ci.
        cur.execute("CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4" % url.database.replace("`", "``"))
finally:
    conn.close()
'
}

case $STOCKADE_DATABASE_URL in
    mysql*)
        log "database: ensuring $(redact "$STOCKADE_DATABASE_URL") exists"
        create_mysql_database
        ;;
esac

run_once migrate migrate || die "stockade migrate failed"
if [[ $SEED != 0 ]]; then
    run_once seed seed || die "stockade seed failed"
fi

start api serve --host 127.0.0.1 --port "$API_PORT" --workers 2
start tasks-api serve-tasks --host 127.0.0.1 --port "$TASKS_PORT"
start worker worker
start beat beat

log "public API      http://127.0.0.1:$API_PORT  (2 worker processes; GET /healthz, /readyz)"
log "internal tasks  http://127.0.0.1:$TASKS_PORT  (POST /tasks/order-processed)"
log "worker, beat    broker $(redact "$STOCKADE_BROKER_URL")"
log "cache           $(redact "$STOCKADE_REDIS_URL")"
log "database        $(redact "$STOCKADE_DATABASE_URL")"
log "Ctrl-C stops everything"

# A stockade process that exits is gone from the process table at once (the
# shell reaps it), even if something it forked still holds the pipe open.
while :; do
    for i in "${!pgids[@]}"; do
        if ! kill -0 "${pgids[$i]}" 2>/dev/null; then
            log "${names[$i]} exited; stopping the others"
            exit 1
        fi
    done
    sleep 1
done
