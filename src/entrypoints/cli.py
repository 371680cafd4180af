"""The `stockade` console script.

Exit codes: 0 done; 1 the command failed (the database did not answer within the startup
timeout, it has no schema, or it failed on the way), and for `check` drift was found;
2 a setting or argument is unusable, and for `check` also "could not check". A configuration
or connection problem is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import version

from stockade.adapters.sql.startup import StartupFailure, redacted, require_current_schema, wait_for_database
from stockade.entrypoints.settings import Settings, SettingsError, settings_help

SAMPLE_PRODUCT = {"name": "Laptop Gaming", "price": "15000000.00", "stock": 10}
#: A setting or argument cannot be used.
EXIT_BAD_SETTING = 2

log = logging.getLogger("stockade")


def _logging(settings: Settings) -> None:
    from stockade.entrypoints.logs import configure_logging

    configure_logging(settings.log_format)


def _database_ready(settings: Settings) -> bool:
    """Wait for the database (up to the startup timeout); SQLite is migrated here, since the
    embedded default creates its schema on start. Returns whether the schema is current."""
    current = wait_for_database(settings.database_url, settings.startup_timeout_seconds)
    if settings.is_sqlite and not current:
        from stockade.adapters.sql import migrate

        migrate(settings.database_url)
        current = True
    return current


def _services(settings: Settings):
    """Services for a one-shot command, on a database that answers and has the latest schema."""
    require_current_schema(settings.database_url, _database_ready(settings))
    from stockade.entrypoints.bootstrap import build_services

    return build_services(settings, migrate_schema=False)


def _serve_checks(settings: Settings) -> None:
    """What the master checks before it binds: the database answers; a missing schema is only
    reported, since `stockade migrate` may be running right now (until then: 503s)."""
    if not _database_ready(settings):
        log.warning(
            "the database %s has no schema or an older one: run `stockade migrate`; "
            "until then /readyz and the API answer 503",
            redacted(settings.database_url),
        )


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_public_api_secrets()
    _serve_checks(settings)
    from stockade.entrypoints.gunicorn_app import multiprocess_metrics, serve

    def factory():
        import atexit

        from stockade.entrypoints.bootstrap import build_services
        from stockade.entrypoints.http import create_app

        _logging(settings)
        services = build_services(settings, migrate_schema=False)
        services.start_background()
        atexit.register(services.close)
        return create_app(
            services.shop,
            admin_token=settings.admin_token,
            webhook_secret=settings.webhook_secret,
            readiness=services.readiness,
            cors_origins=settings.cors_origins,
        )

    banner = (
        f"stockade: serving http://{args.host}:{args.port} ({args.workers} worker(s), "
        f"{'embedded tasks' if settings.embedded else 'Celery broker'}, "
        f"database {redacted(settings.database_url)})"
    )
    with multiprocess_metrics(args.workers):
        serve(factory, args.host, args.port, args.workers, banner=banner, log_format=settings.log_format)
    return 0


def cmd_serve_tasks(args: argparse.Namespace, settings: Settings) -> int:
    _serve_checks(settings)
    from stockade.entrypoints.gunicorn_app import serve

    def factory():
        import atexit

        from stockade.entrypoints.bootstrap import build_services
        from stockade.entrypoints.tasks_http import create_tasks_app

        _logging(settings)
        services = build_services(settings, migrate_schema=False)
        atexit.register(services.close)
        return create_tasks_app(services.shop)

    serve(
        factory,
        args.host,
        args.port,
        1,
        banner=f"stockade: internal task API on http://{args.host}:{args.port}",
        log_format=settings.log_format,
    )
    return 0


def _require_broker(settings: Settings, command: str) -> None:
    if settings.embedded:
        raise SettingsError(
            f"stockade {command} needs STOCKADE_BROKER_URL (e.g. redis://127.0.0.1:6379/1); "
            "without it, `stockade serve` runs tasks and sweeps in-process"
        )


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    _require_broker(settings, "worker")
    require_current_schema(settings.database_url, _database_ready(settings))
    from stockade.entrypoints.worker import run_worker

    return run_worker(settings, args.concurrency or settings.task_concurrency)


def cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    _require_broker(settings, "beat")
    from stockade.entrypoints.worker import run_beat

    return run_beat(_services(settings), args.heartbeat)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from stockade.adapters.sql import migrate

    wait_for_database(settings.database_url, settings.startup_timeout_seconds)
    migrate(settings.database_url)
    print(f"stockade: schema of {redacted(settings.database_url)} is at the latest version")
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    with _services(settings) as services:
        shop = services.shop
        after = 0
        while True:
            page, after = shop.list_products(200, after)
            for product in page:
                if product.name == SAMPLE_PRODUCT["name"]:
                    print(f"stockade: sample product already present (id {product.id}, stock {product.stock})")
                    return 0
            if after is None:
                break
        product = shop.create_product(**SAMPLE_PRODUCT)
        print(
            f"stockade: added sample product id {product.id}: {product.name}, "
            f"price {product.price}, stock {product.stock}"
        )
    return 0


def cmd_release_expired(args: argparse.Namespace, settings: Settings) -> int:
    with _services(settings) as services:
        holds, orders = services.shop.release_expired()
    print(f"stockade: released {holds} expired hold(s), cancelled {orders} unpaid order(s)")
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    with _services(settings) as services:
        report = services.shop.check()
    for drift in report.drifts:
        print(
            f"DRIFT product {drift.product_id} ({drift.name}): stock={drift.stock} reserved={drift.reserved} "
            f"expected_reserved={drift.expected_reserved}: {'; '.join(drift.problems)}"
        )
    print(f"stockade check: {report.products_checked} product(s) checked, {len(report.drifts)} drifted")
    return 0 if report.ok else 1


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small; use 1 or more")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port; use 1..65535")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option, and the settings table kept as written."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stockade",
        description="Stockade order and flash-sale checkout service",
        epilog=settings_help(),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"stockade {version('stockade')}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, func, *, outage_exit: int = 1, parent=sub) -> argparse.ArgumentParser:
        cmd = parent.add_parser(
            name, help=summary, description=summary, epilog=settings_help(), formatter_class=_HelpFormatter
        )
        cmd.set_defaults(func=func, outage_exit=outage_exit)
        return cmd

    serve = command("serve", "the public HTTP API (gunicorn, gevent workers)", cmd_serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port to listen on")
    serve.add_argument("--workers", type=_positive, default=1, help="worker processes")

    tasks = command("serve-tasks", "the internal task-enqueue API (POST /tasks/order-processed)", cmd_serve_tasks)
    tasks.add_argument("--host", default="127.0.0.1", help="address to listen on; keep it internal")
    tasks.add_argument("--port", type=_port, default=5000, help="TCP port to listen on")

    worker = command("worker", "the background worker (Celery); needs STOCKADE_BROKER_URL", cmd_worker)
    worker.add_argument(
        "--concurrency",
        type=_positive,
        default=None,
        metavar="N",
        help="tasks run at once, one thread each (default: STOCKADE_TASK_CONCURRENCY, else 200). Order processing "
        "mostly waits on other systems, so a thread per order costs little: 200 drain a 1000-order sale in "
        "about 25 s at the default 5 s processing time; memory stays bounded, as the worker takes at most "
        "N tasks from the broker at a time",
    )
    beat = command(
        "beat",
        "the periodic work, run in this process, each job on its own thread: expiry sweeps, "
        "the outbox relay, deferred webhooks, the Idempotency-Key purge; any number may run",
        cmd_beat,
    )
    beat.add_argument(
        "--heartbeat",
        default=None,
        metavar="FILE",
        help="touch FILE every sweep interval while every job runs on time (for a healthcheck)",
    )
    command(
        "migrate",
        "bring the database schema to the latest version; safe to run from many processes at once",
        cmd_migrate,
    )
    command("seed", "add the sample product (once)", cmd_seed)

    holds = sub.add_parser("holds", help="hold maintenance", description="hold maintenance")
    command(
        "release-expired",
        "one sweep of expired holds and timed-out orders, then exit",
        cmd_release_expired,
        parent=holds.add_subparsers(dest="holds_command", required=True, metavar="COMMAND"),
    )
    command(
        "check",
        "verify the stock invariants against the holds and orders tables; exit 0 clean, "
        "1 naming each product that drifted, 2 when it could not check",
        cmd_check,
        outage_exit=EXIT_BAD_SETTING,
    )
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: 0 after --help/--version, 2 for a bad argument
        return int(exc.code or 0)
    try:
        settings = Settings.from_env()
        if args.command != "serve":
            _logging(settings)
        return args.func(args, settings)
    except SettingsError as exc:
        print(f"stockade: configuration error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    except Exception as exc:
        reason = _outage(exc)
        if reason is None:
            raise
        print(f"stockade {args.command}: {reason}", file=sys.stderr)
        return args.outage_exit


def _outage(exc: Exception) -> str | None:
    """One line for a database or startup problem; None for anything else (a bug: traceback)."""
    from stockade.adapters.sql.engine import storage_problem
    from stockade.adapters.sql.migrate import MigrationLockTimeout

    if isinstance(exc, StartupFailure | MigrationLockTimeout):
        return str(exc)
    problem = storage_problem(exc)
    if problem is not None:
        return f"{problem}; check it, then run the command again"
    from stockade.application.ports import TransientStorageError  # only now: see gunicorn_app

    if isinstance(exc, TransientStorageError):
        return f"the database is too busy ({exc}); run the command again"
    return None


if __name__ == "__main__":
    sys.exit(main())
