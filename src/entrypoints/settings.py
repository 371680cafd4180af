"""Configuration from STOCKADE_* environment variables; read only by entrypoints.

Each setting is declared once, in SETTINGS: its variable, what it means and how its value
is checked. Its default is the Settings field's. `stockade <command> --help` and the README
list the same table. Every variable may instead name a file that holds the value, as
`<VARIABLE>_FILE` (for secrets mounted as files, e.g. compose or Kubernetes secrets).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "sqlite:///stockade.db"
#: The shortest admin token and webhook secret that production accepts.
MIN_SECRET_LENGTH = 32


class SettingsError(ValueError):
    """A variable has a value we cannot use; the message names it and says what fits."""


@attrs.frozen
class Settings:
    """Every knob of the service, with its default."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    broker_url: str | None = None
    hold_ttl_seconds: int = 120
    hold_max_seconds: int = 900
    order_payment_ttl_seconds: int = 900
    sweep_interval_seconds: float = 5.0
    order_processing_seconds: float = 5.0
    max_quantity: int = 100
    admin_token: str | None = None
    webhook_secret: str | None = None
    env: str = "development"
    startup_timeout_seconds: float = 30.0
    outbox_retry_seconds: int = 60
    task_visibility_timeout_seconds: int = 3600
    #: tasks one process runs at once (`stockade worker`, the embedded runner): they mostly
    #: wait, so a thread each, and enough of them to drain a 1000-order sale in about 25 s
    task_concurrency: int = 200
    #: `text`, or `json`: one JSON object per log line
    log_format: str = "text"
    #: origins a browser may call the public API from; none: no CORS headers
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = _raw(env, setting.variable)
            if raw is not None:
                values[setting.field] = setting.parse(setting.variable, raw)
        password = _raw(env, DATABASE_PASSWORD)
        if password is not None:
            url = make_url(values.get("database_url", DEFAULT_DATABASE_URL))
            values["database_url"] = url.set(password=password).render_as_string(hide_password=False)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.hold_max_seconds < self.hold_ttl_seconds:
            raise SettingsError("STOCKADE_HOLD_MAX_SECONDS must be at least STOCKADE_HOLD_TTL_SECONDS")
        if self.task_visibility_timeout_seconds <= self.order_processing_seconds:
            raise SettingsError(
                "STOCKADE_TASK_VISIBILITY_TIMEOUT_SECONDS must exceed STOCKADE_ORDER_PROCESSING_SECONDS, "
                "or Redis redelivers tasks that are still running"
            )

    def require_public_api_secrets(self) -> None:
        """production: the public API needs a long admin token and webhook secret."""
        if self.env != "production":
            return
        for variable, value in (
            ("STOCKADE_ADMIN_TOKEN", self.admin_token),
            ("STOCKADE_WEBHOOK_SECRET", self.webhook_secret),
        ):
            if not value:
                raise SettingsError(
                    f"STOCKADE_ENV=production refuses to serve without {variable}: set it (or "
                    f"{variable}_FILE) to a random string of at least {MIN_SECRET_LENGTH} characters"
                )
            if len(value) < MIN_SECRET_LENGTH:
                raise SettingsError(
                    f"{variable} has {len(value)} characters; production needs at least "
                    f"{MIN_SECRET_LENGTH}, e.g. python3 -c 'import secrets; print(secrets.token_hex(32))'"
                )

    @property
    def embedded(self) -> bool:
        """No broker: tasks and sweeps run inside the serving process."""
        return self.broker_url is None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _raw(env: Mapping[str, str], variable: str) -> str | None:
    """The variable's value, or the content of the file `<variable>_FILE` names; None if neither is set."""
    direct = env.get(variable) or None
    path = env.get(f"{variable}_FILE") or None
    if direct is not None and path is not None:
        raise SettingsError(f"both {variable} and {variable}_FILE are set; unset one of them")
    if path is None:
        return direct
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(
            f"{variable}_FILE={path}: cannot read it ({exc.strerror}); point it at a readable file holding the value"
        ) from None


# ---------------------------------------------------------------- how values are checked


def _text(variable: str, raw: str) -> str:
    return raw


def _number(convert: Callable[[str], Any], minimum: float, maximum: float, what: str) -> Callable[[str, str], Any]:
    def parse(variable: str, raw: str) -> Any:
        try:
            value = convert(raw)
        except ValueError:
            raise SettingsError(f"{variable}={raw!r} is not {what}; set one or unset the variable") from None
        if not minimum <= value <= maximum:  # NaN fails this too
            raise SettingsError(f"{variable}={raw} is out of range; use {_shown(minimum)}..{_shown(maximum)}")
        return value

    return parse


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _integer(minimum: int, maximum: int = 2**31 - 1) -> Callable[[str, str], int]:
    return _number(int, minimum, maximum, "a whole number")


def _seconds(minimum: float, maximum: float = 86400) -> Callable[[str, str], float]:
    return _number(float, minimum, maximum, "a number of seconds")


def _database_url(variable: str, raw: str) -> str:
    try:
        url = make_url(raw)
        url.get_dialect()
    except Exception as exc:  # ArgumentError, NoSuchModuleError: the message says which
        raise SettingsError(
            f"{variable} is not a usable database URL ({exc}); use e.g. sqlite:///stockade.db "
            "or mysql+pymysql://user:password@host:3306/database"
        ) from None
    if url.get_backend_name() not in ("sqlite", "mysql", "mariadb"):
        raise SettingsError(
            f"{variable} names a {url.get_backend_name()} database; Stockade runs on SQLite "
            "(sqlite:///path) and MySQL/MariaDB (mysql+pymysql://...)"
        )
    return raw


def _redis_url(variable: str, raw: str) -> str:
    # Checked by hand: importing redis here would import ssl into the gunicorn master before
    # its workers monkey-patch it (gunicorn_app.py).
    parts = urlsplit(raw)
    problem = None
    if parts.scheme not in ("redis", "rediss", "unix"):
        problem = "it must start with redis://, rediss:// or unix://"
    else:
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when it is read
        except ValueError:
            problem = "its port is not a number"
        if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
            problem = "its path must be a database number, as in /0"
    if problem:
        raise SettingsError(f"{variable} is not a Redis URL ({problem}); use e.g. redis://host:6379/0")
    return raw


def _environment(variable: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("development", "production", "test"):
        raise SettingsError(f"{variable}={raw!r}; use development, test or production")
    return value


def _log_format(variable: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("text", "json"):
        raise SettingsError(f"{variable}={raw!r}; use text or json")
    return value


def _origins(variable: str, raw: str) -> tuple[str, ...]:
    origins = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise SettingsError(
                f"{variable}: {origin!r} is not an origin; give scheme://host[:port] values "
                "separated by commas, e.g. https://shop.example,http://localhost:3000"
            )
    return origins


@attrs.frozen
class Setting:
    """One environment variable: the Settings field it sets, what it means, how it is checked."""

    variable: str
    field: str
    meaning: str
    parse: Callable[[str, str], Any] = _text
    #: what --help and the README say when the default is "unset"
    unset: str = "unset"

    @property
    def default(self) -> str:
        value = attrs.fields_dict(Settings)[self.field].default
        if value is None or value == ():
            return self.unset
        return _shown(value) if isinstance(value, float) else str(value)


#: A password for STOCKADE_DATABASE_URL kept apart from it (STOCKADE_DATABASE_PASSWORD_FILE for a
#: secret file): it replaces the URL's own password, and needs no URL escaping.
DATABASE_PASSWORD = "STOCKADE_DATABASE_PASSWORD"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "STOCKADE_DATABASE_URL",
        "database_url",
        "SQLAlchemy URL; production: mysql+pymysql://user:pw@host:3306/db?charset=utf8mb4",
        _database_url,
    ),
    Setting(
        "STOCKADE_REDIS_URL",
        "redis_url",
        "Redis for the product cache (give it its own db number)",
        _redis_url,
        unset="unset: in-process cache",
    ),
    Setting(
        "STOCKADE_BROKER_URL",
        "broker_url",
        "Celery broker, e.g. redis://host:6379/1",
        _redis_url,
        unset="unset: in-process task runner",
    ),
    Setting("STOCKADE_HOLD_TTL_SECONDS", "hold_ttl_seconds", "hold lifetime", _integer(1, 86400 * 30)),
    Setting(
        "STOCKADE_HOLD_MAX_SECONDS",
        "hold_max_seconds",
        "the longest a hold may live, extensions included (PATCH /api/holds/{id})",
        _integer(1, 86400 * 30),
    ),
    Setting(
        "STOCKADE_ORDER_PAYMENT_TTL_SECONDS",
        "order_payment_ttl_seconds",
        "a pending order not paid by then is cancelled",
        _integer(1, 86400 * 30),
    ),
    Setting(
        "STOCKADE_SWEEP_INTERVAL_SECONDS",
        "sweep_interval_seconds",
        "how often expiry sweeps, the outbox relay and deferred webhooks run",
        _seconds(0.01),
    ),
    Setting(
        "STOCKADE_ORDER_PROCESSING_SECONDS",
        "order_processing_seconds",
        "simulated processing time of process_order",
        _seconds(0),
    ),
    Setting(
        "STOCKADE_MAX_QUANTITY", "max_quantity", "largest quantity of one purchase or hold (422 above)", _integer(1)
    ),
    Setting(
        "STOCKADE_ADMIN_TOKEN",
        "admin_token",
        "when set, product writes and /api/logs need Authorization: Bearer <token>",
    ),
    Setting("STOCKADE_WEBHOOK_SECRET", "webhook_secret", "when set, webhooks need a valid Stockade-Signature"),
    Setting(
        "STOCKADE_ENV",
        "env",
        "production: `stockade serve` refuses to start without the admin token and "
        f"webhook secret, or with either shorter than {MIN_SECRET_LENGTH} characters",
        _environment,
    ),
    Setting(
        "STOCKADE_STARTUP_TIMEOUT_SECONDS",
        "startup_timeout_seconds",
        "how long a command waits for the database at start before it exits",
        _seconds(0, 3600),
    ),
    Setting(
        "STOCKADE_OUTBOX_RETRY_SECONDS",
        "outbox_retry_seconds",
        "a task no worker has started by then is sent again if it may be lost; a started one once this long "
        "past the processing time (tasks are idempotent)",
        _integer(1, 86400),
    ),
    Setting(
        "STOCKADE_TASK_CONCURRENCY",
        "task_concurrency",
        "tasks one process runs at once, a thread each: `stockade worker` (unless --concurrency says "
        "otherwise) and the embedded runner",
        _integer(1, 2000),
    ),
    Setting("STOCKADE_LOG_FORMAT", "log_format", "text, or json: one JSON object per log line", _log_format),
    Setting(
        "STOCKADE_CORS_ORIGINS",
        "cors_origins",
        "origins a browser may call the public API from, comma-separated (* for any)",
        _origins,
        unset="unset: no CORS headers",
    ),
    Setting(
        "STOCKADE_TASK_VISIBILITY_TIMEOUT_SECONDS",
        "task_visibility_timeout_seconds",
        "Redis broker: a task never acknowledged is redelivered after this long; longer than the longest task",
        _integer(1, 86400 * 7),
    ),
)


def settings_help() -> str:
    """The table of every variable for `--help`: name and default, then meaning."""
    lines = ["environment (each variable may instead name a file holding its value: <VARIABLE>_FILE):"]
    for s in SETTINGS:
        lines += [f"  {s.variable} (default: {s.default})", f"      {s.meaning}"]
    lines += [f"  {DATABASE_PASSWORD} (default: unset)", "      replaces the password of STOCKADE_DATABASE_URL"]
    return "\n".join(lines) + "\n"
