"""One settings object, read once from the environment.

Every setting comes from an environment variable (see README, "Configuration").
Values are parsed and validated at start; a bad value stops the process with an
error that names the variable. When no database, Redis or AMQP settings are
given, Vedina runs on its embedded backends (SQLite file, in-process cache,
database-backed job outbox), so it works with no external service.

>>> s = load_settings({"PORT": "9000"})
>>> s.port, s.storage_profile
(9000, 'embedded')
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

Environment = Literal["development", "test", "production"]

# A secret shorter than this, or one of the well-known development values,
# is refused in production.
MIN_SECRET_LENGTH = 32
_DEVELOPMENT_SECRETS = {"", "change-me", "secret", "development-secret"}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    env: Environment = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    cluster_enabled: bool = True
    workers: int = 0  # 0 = one per core
    server: Literal["granian", "robyn"] = "granian"
    api_version: str = "v1"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    data_dir: str = "var"
    media_root: str = ""  # default: <data_dir>/media
    sqlite_path: str = ""  # default: <data_dir>/vedina.sqlite3

    db_host: str = ""
    db_port: int = 3306
    db_name: str = "vedina"
    db_user: str = "vedina"
    db_password: str = ""
    db_pool_size: int = 10

    redis_url: str = ""
    amqp_url: str = ""
    amqp_queue_prefix: str = "vedina"

    session_secret: str = ""
    max_body_bytes: int = 1_048_576
    worker_max_rss_mib: int = 0  # 0 = no RSS recycling
    backpressure: int = 0  # 0 = Granian's default

    # -- derived values -----------------------------------------------------

    @property
    def storage_profile(self) -> Literal["embedded", "real"]:
        return "real" if self.db_host else "embedded"

    @property
    def worker_count(self) -> int:
        if not self.cluster_enabled:
            return 1
        return self.workers or (os.cpu_count() or 1)

    @property
    def media_dir(self) -> Path:
        return Path(self.media_root or Path(self.data_dir) / "media").resolve()

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL; the password is passed separately (never in logs)."""
        if self.db_host:
            return f"mysql+asyncmy://{self.db_user}@{self.db_host}:{self.db_port}/{self.db_name}?charset=utf8mb4"
        path = Path(self.sqlite_path or Path(self.data_dir) / "vedina.sqlite3").resolve()
        return f"sqlite+aiosqlite:///{path}"


# Environment variable -> field name. One table, so README and code agree.
ENV_VARS: dict[str, str] = {
    "VEDINA_ENV": "env",
    "HOST": "host",
    "PORT": "port",
    "CLUSTER_ENABLED": "cluster_enabled",
    "WORKERS": "workers",
    "SERVER": "server",
    "API_VERSION": "api_version",
    "LOG_LEVEL": "log_level",
    "DATA_DIR": "data_dir",
    "MEDIA_ROOT": "media_root",
    "SQLITE_PATH": "sqlite_path",
    "DB_HOST": "db_host",
    "DB_PORT": "db_port",
    "DB_NAME": "db_name",
    "DB_USER": "db_user",
    "DB_PASSWORD": "db_password",
    "DB_POOL_SIZE": "db_pool_size",
    "REDIS_URL": "redis_url",
    "AMQP_URL": "amqp_url",
    "AMQP_QUEUE_PREFIX": "amqp_queue_prefix",
    "SESSION_SECRET": "session_secret",
    "MAX_BODY_BYTES": "max_body_bytes",
    "WORKER_MAX_RSS_MIB": "worker_max_rss_mib",
    "BACKPRESSURE": "backpressure",
}
_FIELD_TO_ENV = {field: var for var, field in ENV_VARS.items()}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(var: str, raw: str, field_type: object) -> object:
    raw = raw.strip()
    if field_type is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(f"{var} must be true or false, got {raw!r}")
    if field_type is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{var} must be an integer, got {raw!r}") from None
    return raw if var not in {"LOG_LEVEL", "VEDINA_ENV", "SERVER"} else raw.lower()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate the settings from ``environ`` (default: ``os.environ``)."""
    environ = os.environ if environ is None else environ
    types = {f.name: f.type for f in msgspec.structs.fields(Settings)}
    values: dict[str, object] = {}
    for var, field in ENV_VARS.items():
        if var in environ and environ[var] != "":
            values[field] = _coerce(var, environ[var], types[field])
    try:
        settings = msgspec.convert(values, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(_name_variable(str(exc))) from None
    _validate(settings)
    if not settings.session_secret:
        # Development only (production is refused above): a per-run secret, so
        # nothing predictable signs sessions. Tokens do not survive a restart.
        settings = msgspec.structs.replace(settings, session_secret=secrets.token_urlsafe(48))
    return settings


def _name_variable(message: str) -> str:
    # msgspec says "... - at `$.port`"; name the environment variable instead.
    for field, var in _FIELD_TO_ENV.items():
        message = message.replace(f"`$.{field}`", var)
    return message


def _validate(s: Settings) -> None:
    if not 0 < s.port < 65536:
        raise ConfigError(f"PORT must be between 1 and 65535, got {s.port}")
    if s.workers < 0:
        raise ConfigError(f"WORKERS must be 0 (one per core) or more, got {s.workers}")
    if s.max_body_bytes < 1024:
        raise ConfigError(f"MAX_BODY_BYTES must be at least 1024, got {s.max_body_bytes}")
    if s.db_pool_size < 1:
        raise ConfigError(f"DB_POOL_SIZE must be at least 1, got {s.db_pool_size}")
    if s.env == "production":
        if s.session_secret in _DEVELOPMENT_SECRETS or len(s.session_secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"SESSION_SECRET must be set to a random value of at least {MIN_SECRET_LENGTH} characters in production"
            )
