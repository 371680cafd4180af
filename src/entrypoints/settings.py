"""Configuration from STOCKADE_* environment variables; read only by entrypoints."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import attrs


DEFAULT_DATABASE_URL = "sqlite:///stockade.db"


class SettingsError(ValueError):
    """A variable has a value we cannot use; the message names it and says what fits."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int = 2**31 - 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer; set a whole number or unset it") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name}={value} is out of range; use {minimum}..{maximum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
    if not 0 <= value <= 86400:
        raise SettingsError(f"{name}={value} is out of range; use 0..86400 seconds")
    return value


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise SettingsError(f"STOCKADE_CORS_ORIGINS: {origin!r} is not an origin; give scheme://host[:port] "
                                "values separated by commas, e.g. https://shop.example,http://localhost:3000")
    return origins


@attrs.frozen
class Settings:
    """Every knob of contract section 2, with its default."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    broker_url: str | None = None
    hold_ttl_seconds: int = 120
    order_payment_ttl_seconds: int = 900
    sweep_interval_seconds: float = 5.0
    order_processing_seconds: float = 5.0
    max_quantity: int = 100
    admin_token: str | None = None
    webhook_secret: str | None = None
    env: str = "development"
    #: how long a published task may go uncompleted before the outbox relay sends it again
    outbox_retry_seconds: int = 60
    #: Redis broker: an unacknowledged task goes back to the queue after this long
    task_visibility_timeout_seconds: int = 3600
    #: `text`, or `json`: one JSON object per log line
    log_format: str = "text"
    #: origins a browser may call the public API from; none: no CORS headers
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            database_url=env.get("STOCKADE_DATABASE_URL") or DEFAULT_DATABASE_URL,
            redis_url=env.get("STOCKADE_REDIS_URL") or None,
            broker_url=env.get("STOCKADE_BROKER_URL") or None,
            hold_ttl_seconds=_int(env, "STOCKADE_HOLD_TTL_SECONDS", 120, 1, 86400 * 30),
            order_payment_ttl_seconds=_int(env, "STOCKADE_ORDER_PAYMENT_TTL_SECONDS", 900, 1, 86400 * 30),
            sweep_interval_seconds=_float(env, "STOCKADE_SWEEP_INTERVAL_SECONDS", 5.0),
            order_processing_seconds=_float(env, "STOCKADE_ORDER_PROCESSING_SECONDS", 5.0),
            max_quantity=_int(env, "STOCKADE_MAX_QUANTITY", 100, 1),
            admin_token=env.get("STOCKADE_ADMIN_TOKEN") or None,
            webhook_secret=env.get("STOCKADE_WEBHOOK_SECRET") or None,
            env=(env.get("STOCKADE_ENV") or "development").strip().lower(),
            outbox_retry_seconds=_int(env, "STOCKADE_OUTBOX_RETRY_SECONDS", 60, 1, 86400),
            task_visibility_timeout_seconds=_int(env, "STOCKADE_TASK_VISIBILITY_TIMEOUT_SECONDS", 3600, 1, 86400 * 7),
            log_format=(env.get("STOCKADE_LOG_FORMAT") or "text").strip().lower(),
            cors_origins=_origins(env.get("STOCKADE_CORS_ORIGINS") or ""),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.env not in ("development", "production", "test"):
            raise SettingsError(f"STOCKADE_ENV={self.env!r}; use development, test or production")
        if self.env == "production":
            missing = [n for n, v in (("STOCKADE_ADMIN_TOKEN", self.admin_token),
                                      ("STOCKADE_WEBHOOK_SECRET", self.webhook_secret)) if not v]
            if missing:
                raise SettingsError(
                    "STOCKADE_ENV=production refuses to start without " + " and ".join(missing)
                    + ": set them (long random strings) in the environment"
                )
        if self.task_visibility_timeout_seconds <= self.order_processing_seconds:
            raise SettingsError("STOCKADE_TASK_VISIBILITY_TIMEOUT_SECONDS must exceed STOCKADE_ORDER_PROCESSING_SECONDS, "
                                "or Redis redelivers tasks that are still running")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"STOCKADE_LOG_FORMAT={self.log_format!r}; use text or json")
        if self.sweep_interval_seconds <= 0:
            raise SettingsError("STOCKADE_SWEEP_INTERVAL_SECONDS must be above 0")

    @property
    def embedded(self) -> bool:
        """No broker: tasks and sweeps run inside the serving process."""
        return self.broker_url is None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
