"""Serving a Falcon app under gunicorn; each worker builds its own services after fork."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gunicorn.app.base import BaseApplication

log = logging.getLogger("stockade")


class StockadeServer(BaseApplication):
    """gunicorn with our options and an app factory called in each worker process."""

    def __init__(self, factory: Callable[[], object], options: dict) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        return self.factory()


def serve(factory: Callable[[], object], host: str, port: int, workers: int, threads: int = 8) -> None:
    StockadeServer(
        factory,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "gthread",
            "threads": threads,
            "keepalive": 5,
            "graceful_timeout": 20,
            "timeout": 60,
            "accesslog": None,
            "loglevel": "info",
        },
    ).run()
