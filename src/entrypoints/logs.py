"""Log lines of every command: text or one JSON object per line (STOCKADE_LOG_FORMAT), each with
the request id of the work it serves.

The standard library's logging, not structlog: gunicorn, Celery, SQLAlchemy and Alembic all log
through it, so one handler and one formatter on the root logger shape every line of a process;
structlog would have to be bridged back to it for those anyway.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from stockade.application.tracing import request_id

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s%(request_id_suffix)s"
#: What every LogRecord has; anything else on a record came as `extra` and goes into the JSON object.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id_suffix"}


class RequestIdFilter(logging.Filter):
    """Gives each record the id of the request being served (None outside one), unless it has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None) or request_id.get()
        record.request_id = rid
        record.request_id_suffix = f" request_id={rid}" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, Z), level, logger, message, request_id, and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Route every logger of this process through one stderr handler in `log_format`."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
