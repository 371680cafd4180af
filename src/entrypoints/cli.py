"""The `stockade` console script (contract section 2)."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import tempfile

from stockade.entrypoints.settings import Settings, SettingsError

SAMPLE_PRODUCT = {"name": "Laptop Gaming", "price": "15000000.00", "stock": 10}


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"stockade: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _logging() -> None:
    from stockade.entrypoints.logs import configure_logging

    configure_logging(_settings().log_format)


def _services(settings: Settings, **kwargs):
    from stockade.entrypoints.bootstrap import build_services

    try:
        return build_services(settings, **kwargs)
    except Exception as exc:  # connection refused, bad URL, missing driver...
        print(f"stockade: cannot start with STOCKADE_DATABASE_URL={_redact(settings.database_url)}: {exc}\n"
              "Check that the database answers and run `stockade migrate` first for MySQL.", file=sys.stderr)
        raise SystemExit(1) from None


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()
    from stockade.entrypoints.gunicorn_app import serve

    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes: /metrics must add up every worker's counters.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="stockade-metrics-")
    if settings.is_sqlite:
        # Migrate once in the master, not racing in every worker.
        from stockade.adapters.sql import migrate

        migrate(settings.database_url)

    def factory():
        _logging()
        from stockade.entrypoints.http import create_app

        services = _services(settings, migrate_schema=False)
        services.start_background()
        atexit.register(services.close)
        return create_app(services.shop, admin_token=settings.admin_token,
                          webhook_secret=settings.webhook_secret, readiness=services.readiness,
                          cors_origins=settings.cors_origins)

    print(f"stockade: serving http://{args.host}:{args.port} ({args.workers} worker(s), "
          f"{'embedded tasks' if settings.embedded else 'Celery broker'}, "
          f"database {_redact(settings.database_url)})", flush=True)
    serve(factory, args.host, args.port, args.workers, log_format=settings.log_format)
    return 0


def cmd_serve_tasks(args: argparse.Namespace) -> int:
    settings = _settings()
    from stockade.entrypoints.gunicorn_app import serve

    def factory():
        _logging()
        from stockade.entrypoints.tasks_http import create_tasks_app

        services = _services(settings, migrate_schema=False)
        atexit.register(services.close)
        return create_tasks_app(services.shop)

    if settings.is_sqlite:
        from stockade.adapters.sql import migrate

        migrate(settings.database_url)
    print(f"stockade: internal task API on http://{args.host}:{args.port}", flush=True)
    serve(factory, args.host, args.port, 1, log_format=settings.log_format)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings.embedded:
        print("stockade worker needs STOCKADE_BROKER_URL (e.g. redis://127.0.0.1:6379/1).\n"
              "Without it, `stockade serve` runs tasks and sweeps in-process.", file=sys.stderr)
        return 2
    from stockade.entrypoints.worker import run_worker

    return run_worker(settings, args.concurrency)


def cmd_beat(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings.embedded:
        print("stockade beat needs STOCKADE_BROKER_URL (e.g. redis://127.0.0.1:6379/1).\n"
              "Without it, `stockade serve` runs tasks and sweeps in-process.", file=sys.stderr)
        return 2
    from stockade.entrypoints.worker import run_beat

    return run_beat(settings)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    from stockade.adapters.sql import migrate

    try:
        migrate(settings.database_url)
    except Exception as exc:
        print(f"stockade migrate: failed on {_redact(settings.database_url)}: {exc}", file=sys.stderr)
        return 1
    print(f"stockade: schema of {_redact(settings.database_url)} is at the latest version")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    settings = _settings()
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
        print(f"stockade: added sample product id {product.id}: {product.name}, "
              f"price {product.price}, stock {product.stock}")
    return 0


def cmd_release_expired(args: argparse.Namespace) -> int:
    settings = _settings()
    with _services(settings) as services:
        holds, orders = services.shop.release_expired()
    print(f"stockade: released {holds} expired hold(s), cancelled {orders} unpaid order(s)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    settings = _settings()
    with _services(settings) as services:
        report = services.shop.check()
    for drift in report.drifts:
        print(f"DRIFT product {drift.product_id} ({drift.name}): stock={drift.stock} reserved={drift.reserved} "
              f"expected_reserved={drift.expected_reserved}: {'; '.join(drift.problems)}")
    print(f"stockade check: {report.products_checked} product(s) checked, {len(report.drifts)} drifted")
    return 0 if report.ok else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stockade", description="Stockade order and flash-sale checkout service")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="the public HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    tasks = sub.add_parser("serve-tasks", help="the internal task-enqueue API")
    tasks.add_argument("--host", default="127.0.0.1")
    tasks.add_argument("--port", type=int, default=5000)
    tasks.set_defaults(func=cmd_serve_tasks)

    worker = sub.add_parser("worker", help="the background worker (Celery)")
    worker.add_argument("--concurrency", type=int, default=4)
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("beat", help="the periodic scheduler").set_defaults(func=cmd_beat)
    sub.add_parser("migrate", help="bring the database schema to the latest version").set_defaults(func=cmd_migrate)
    sub.add_parser("seed", help="add the sample product (once)").set_defaults(func=cmd_seed)

    holds = sub.add_parser("holds", help="hold maintenance")
    holds_sub = holds.add_subparsers(dest="holds_command", required=True)
    holds_sub.add_parser("release-expired", help="one sweep of expired holds and timed-out orders") \
        .set_defaults(func=cmd_release_expired)
    sub.add_parser("check", help="verify stock invariants; exit 1 naming drifted products") \
        .set_defaults(func=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command != "serve":
        _logging()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
