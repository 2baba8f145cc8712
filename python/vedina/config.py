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

import ipaddress
import os
import re
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
    # Behind nginx: answer media requests with "X-Accel-Redirect: <prefix><path>"
    # (an internal location aliasing MEDIA_ROOT) and let nginx send the bytes.
    # Empty (default) = the app sends the bytes itself.
    media_accel_redirect: str = ""

    db_host: str = ""
    db_port: int = 3306
    db_name: str = "vedina"
    db_user: str = "vedina"
    db_password: str = ""
    db_pool_size: int = 10
    # Read replicas (vedina.storage.replicas, ADR 0017): "host[:port],..." (same DB_NAME, DB_USER and
    # DB_PASSWORD). Catalog reads go to a healthy one, fenced at the primary's GTID position; a replica
    # down or more than DB_REPLICA_MAX_LAG_S behind is skipped. DB_REPLICA_WAIT_MS: how long a read waits
    # for its replica to reach that position before the primary answers instead. Empty = primary only.
    db_replica_hosts: str = ""
    db_replica_max_lag_s: int = 5
    db_replica_wait_ms: int = 100

    redis_url: str = ""
    # Redis Sentinel (vedina.storage.redis_clients): "host:port,..." of the sentinels; set, it
    # replaces REDIS_URL's host (the URL, if any, still gives the password and db number).
    redis_sentinels: str = ""
    redis_sentinel_service: str = "vedina"  # the master's name in `sentinel monitor`
    redis_sentinel_password: str = ""  # the sentinels' own password (requirepass), if any
    # A request-path Redis command's whole budget (connect, sentinels, retries); then it fails
    # and the next ones fail at once for a second (vedina.storage.redis_guard).
    redis_timeout_ms: int = 3000
    amqp_url: str = ""
    amqp_queue_prefix: str = "vedina"
    # A RabbitMQ cluster (vedina.storage.amqp_nodes): "amqp://...,amqp://..." of its nodes, instead
    # of AMQP_URL; a lost connection moves to another node.
    amqp_urls: str = ""
    # "classic" or "quorum" (x-queue-type of the jobs, dead and retry queues). Empty (default):
    # quorum with AMQP_URLS, classic with AMQP_URL. Changing it: `vedina jobs migrate-queues`.
    amqp_queue_type: str = ""
    # `vedina worker` serves its own /metrics (job counters, durations) on this port of
    # 127.0.0.1 when set; 0 (default) = off.
    worker_metrics_port: int = 0

    session_secret: str = ""
    # Identity (vedina.security): base64 of 32 bytes, required in production
    # (development derives one from SESSION_SECRET).
    api_key_encryption_key: str = ""
    # "kid:base64url-secret,..." (secrets of 32+ bytes); the first one signs,
    # all verify (rotation). Empty: one key derived from SESSION_SECRET.
    jwt_signing_keys: str = ""
    sigv4_region: str = "us-east-1"
    public_base_url: str = "http://localhost:8000"  # links in emails, feeds and the sitemap
    sitemap_page_urls: int = 50_000  # URLs per sitemap; more make /api/sitemap.xml an index (at most 50,000)
    # Log in only once the email is verified (else registering an address and logging in with
    # the password one chose tells whether the address already had an account).
    require_verified_email: bool = True
    mail_from: str = "Vedina <no-reply@vedina.invalid>"
    smtp_url: str = ""  # smtp[s]://user:password@host:port; empty: .eml files under DATA_DIR/mail
    # Inbound webhook secrets: "provider:secret,provider:secret2,..." (a provider
    # may have several secrets during rotation; each at least 24 characters).
    webhook_secrets: str = ""
    max_body_bytes: int = 1_048_576
    worker_max_rss_mib: int = 0  # 0 = no RSS recycling
    backpressure: int = 0  # 0 = Granian's default
    # Zero-downtime releases (vedina.http.rolling): seconds a stopping worker (SIGTERM, SIGHUP
    # reload) may take to finish its in-flight requests before it is killed; and the file whose
    # existence makes /ready answer 503 "draining" (default: <DATA_DIR>/drain-<PORT>, `vedina drain`).
    shutdown_timeout: int = 30
    drain_file: str = ""

    # Rate limiting (vedina.security.ratelimit). A limit is
    # "<count>/<period>[ burst <n>]" (period: <n>ms|s|m|h, burst default = count) or "off".
    rate_limit_enabled: bool = True
    rate_limit_auth: str = "10/60s burst 5"
    rate_limit_stream: str = "60/60s burst 20"
    rate_limit_api: str = "300/60s burst 100"
    # Login attempts per account, whatever the client IP (password guessing on one account).
    rate_limit_login_account: str = "1/1m burst 10"
    # Comment posts per viewer profile (vedina.services.comment_limits).
    rate_limit_comments: str = "5/1m burst 5"
    rate_limit_shm_path: str = ""  # default: /dev/shm/vedina-<uid>/ratelimit-<DATA_DIR hash>-<PORT>.shm
    rate_limit_redis_timeout_ms: int = 100  # then the host tier decides
    trusted_proxies: str = ""  # IPs/CIDRs whose X-Forwarded-For is believed; empty: none
    # Who may read /metrics (client addresses, after TRUSTED_PROXIES); others get 404.
    metrics_allowed_ips: str = "127.0.0.0/8,::1/128"
    access_log: bool = True  # one JSON line per answered request on stderr (vedina.logs.AccessLog)
    # Error tracking (vedina.error_tracking, needs the `sentry` extra): off while SENTRY_DSN is empty.
    sentry_dsn: str = ""
    sentry_environment: str = ""  # default: VEDINA_ENV

    # Per-worker caches (vedina.storage.invalidation, vedina.storage.near_cache).
    invalidation_shm_path: str = ""  # default: /dev/shm/vedina-<uid>/gen-<database hash>.shm
    near_cache_entries: int = 50_000  # per worker and per cache
    catalog_cache_ttl_s: int = 300  # the shared (Redis) copy of a catalog page; writes invalidate it sooner

    # Media ingest jobs (vedina.jobs.media_probe, vedina.jobs.media_transcode).
    transcode_on_ingest: bool = True  # a probed source video gets a media.transcode job
    transcode_preset: str = "veryfast"  # libx264 preset of the ladder's encodes

    # Resumable uploads (tus 1.0, /api/uploads): the largest file, the largest PATCH body (held
    # in memory while it is checked and written), and how long an unfinished upload lives.
    upload_max_bytes: int = 20 * 1024**3
    upload_chunk_max_bytes: int = 64 * 1024**2
    upload_expire_hours: int = 24

    # Playback (vedina.services.playback): signed media URLs and the concurrent-stream limit.
    playback_url_ttl_seconds: int = 300  # life of a signed /api/media URL
    playback_session_timeout_seconds: int = 90  # a playback session without heartbeat ends after this
    max_concurrent_streams: int = 2  # screens of an account without a subscription (a plan sets its own)
    playback_default_plan: str = "none"  # tier of an account without a subscription: none, or a free tier

    # Billing (vedina.services.subscriptions): how long a failed renewal keeps access and is
    # retried, and how long an unpaid new subscription waits before it expires.
    past_due_grace_days: int = 7
    billing_retry_hours: int = 24
    incomplete_expire_hours: int = 23

    # The payment provider (vedina.storage.stripe_provider): "sim" (`vedina provider-sim` on
    # loopback, started by `vedina serve` when STRIPE_API_BASE is empty) or "stripe".
    payment_provider: Literal["sim", "stripe"] = "sim"
    stripe_api_key: str = "sk_test_vedina_sim"  # a real sk_/rk_ key when PAYMENT_PROVIDER=stripe
    stripe_api_base: str = ""  # default: https://api.stripe.com, or http://127.0.0.1:PROVIDER_SIM_PORT for sim
    provider_sim_port: int = 12111

    # Viewer features (vedina.services.progress): watch progress reaches the database at most
    # once per this many seconds per profile and movie (reads always see the latest report).
    progress_flush_seconds: int = 30

    # Backups (vedina.backup): `vedina backup` writes under BACKUP_DIR and keeps the newest backup
    # of each of the last BACKUP_KEEP_DAILY days and of the last BACKUP_KEEP_WEEKLY ISO weeks.
    backup_dir: str = ""  # default: <data_dir>/backups
    backup_keep_daily: int = 7
    backup_keep_weekly: int = 4

    # -- derived values -----------------------------------------------------

    @property
    def redis_enabled(self) -> bool:
        """Redis (a URL, or Sentinel) holds the shared state; else the database table does."""
        return bool(self.redis_url or self.redis_sentinels)

    @property
    def amqp_nodes(self) -> tuple[str, ...]:
        """The broker URLs: AMQP_URLS' list, else AMQP_URL alone; empty = jobs run in-process."""
        if self.amqp_urls:
            return tuple(filter(None, (url.strip() for url in self.amqp_urls.split(","))))
        return (self.amqp_url,) if self.amqp_url else ()

    @property
    def amqp_queue_kind(self) -> Literal["classic", "quorum"]:
        if self.amqp_queue_type:
            return "quorum" if self.amqp_queue_type == "quorum" else "classic"
        return "quorum" if self.amqp_urls else "classic"

    @property
    def storage_profile(self) -> Literal["embedded", "real"]:
        return "real" if self.db_host else "embedded"

    @property
    def worker_count(self) -> int:
        if not self.cluster_enabled:
            return 1
        return self.workers or (os.cpu_count() or 1)

    @property
    def drain_path(self) -> Path:
        return Path(self.drain_file or Path(self.data_dir) / f"drain-{self.port}").resolve()

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
    "MEDIA_ACCEL_REDIRECT": "media_accel_redirect",
    "DB_HOST": "db_host",
    "DB_PORT": "db_port",
    "DB_NAME": "db_name",
    "DB_USER": "db_user",
    "DB_PASSWORD": "db_password",
    "DB_POOL_SIZE": "db_pool_size",
    "DB_REPLICA_HOSTS": "db_replica_hosts",
    "DB_REPLICA_MAX_LAG_S": "db_replica_max_lag_s",
    "DB_REPLICA_WAIT_MS": "db_replica_wait_ms",
    "REDIS_URL": "redis_url",
    "REDIS_SENTINELS": "redis_sentinels",
    "REDIS_SENTINEL_SERVICE": "redis_sentinel_service",
    "REDIS_SENTINEL_PASSWORD": "redis_sentinel_password",
    "REDIS_TIMEOUT_MS": "redis_timeout_ms",
    "AMQP_URL": "amqp_url",
    "AMQP_QUEUE_PREFIX": "amqp_queue_prefix",
    "AMQP_URLS": "amqp_urls",
    "AMQP_QUEUE_TYPE": "amqp_queue_type",
    "WORKER_METRICS_PORT": "worker_metrics_port",
    "SESSION_SECRET": "session_secret",
    "API_KEY_ENCRYPTION_KEY": "api_key_encryption_key",
    "JWT_SIGNING_KEYS": "jwt_signing_keys",
    "SIGV4_REGION": "sigv4_region",
    "PUBLIC_BASE_URL": "public_base_url",
    "SITEMAP_PAGE_URLS": "sitemap_page_urls",
    "REQUIRE_VERIFIED_EMAIL": "require_verified_email",
    "MAIL_FROM": "mail_from",
    "SMTP_URL": "smtp_url",
    "WEBHOOK_SECRETS": "webhook_secrets",
    "MAX_BODY_BYTES": "max_body_bytes",
    "WORKER_MAX_RSS_MIB": "worker_max_rss_mib",
    "BACKPRESSURE": "backpressure",
    "SHUTDOWN_TIMEOUT": "shutdown_timeout",
    "DRAIN_FILE": "drain_file",
    "RATE_LIMIT_ENABLED": "rate_limit_enabled",
    "RATE_LIMIT_AUTH": "rate_limit_auth",
    "RATE_LIMIT_STREAM": "rate_limit_stream",
    "RATE_LIMIT_API": "rate_limit_api",
    "RATE_LIMIT_LOGIN_ACCOUNT": "rate_limit_login_account",
    "RATE_LIMIT_COMMENTS": "rate_limit_comments",
    "RATE_LIMIT_SHM_PATH": "rate_limit_shm_path",
    "RATE_LIMIT_REDIS_TIMEOUT_MS": "rate_limit_redis_timeout_ms",
    "TRUSTED_PROXIES": "trusted_proxies",
    "METRICS_ALLOWED_IPS": "metrics_allowed_ips",
    "ACCESS_LOG": "access_log",
    "SENTRY_DSN": "sentry_dsn",
    "SENTRY_ENVIRONMENT": "sentry_environment",
    "INVALIDATION_SHM_PATH": "invalidation_shm_path",
    "NEAR_CACHE_ENTRIES": "near_cache_entries",
    "CATALOG_CACHE_TTL_S": "catalog_cache_ttl_s",
    "TRANSCODE_ON_INGEST": "transcode_on_ingest",
    "TRANSCODE_PRESET": "transcode_preset",
    "UPLOAD_MAX_BYTES": "upload_max_bytes",
    "UPLOAD_CHUNK_MAX_BYTES": "upload_chunk_max_bytes",
    "UPLOAD_EXPIRE_HOURS": "upload_expire_hours",
    "PLAYBACK_URL_TTL_SECONDS": "playback_url_ttl_seconds",
    "PLAYBACK_SESSION_TIMEOUT_SECONDS": "playback_session_timeout_seconds",
    "MAX_CONCURRENT_STREAMS": "max_concurrent_streams",
    "PLAYBACK_DEFAULT_PLAN": "playback_default_plan",
    "PAST_DUE_GRACE_DAYS": "past_due_grace_days",
    "BILLING_RETRY_HOURS": "billing_retry_hours",
    "INCOMPLETE_EXPIRE_HOURS": "incomplete_expire_hours",
    "PAYMENT_PROVIDER": "payment_provider",
    "STRIPE_API_KEY": "stripe_api_key",
    "STRIPE_API_BASE": "stripe_api_base",
    "PROVIDER_SIM_PORT": "provider_sim_port",
    "PROGRESS_FLUSH_SECONDS": "progress_flush_seconds",
    "BACKUP_DIR": "backup_dir",
    "BACKUP_KEEP_DAILY": "backup_keep_daily",
    "BACKUP_KEEP_WEEKLY": "backup_keep_weekly",
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
    return raw if var not in {"LOG_LEVEL", "VEDINA_ENV", "SERVER", "PAYMENT_PROVIDER"} else raw.lower()


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


_PROVIDER = re.compile(r"^[a-z0-9_-]{1,32}$")
MIN_WEBHOOK_SECRET_LENGTH = 24


def webhook_secret_map(s: Settings) -> dict[str, list[bytes]]:
    """``WEBHOOK_SECRETS`` as provider -> secrets (every secret verifies)."""
    secrets_by_provider: dict[str, list[bytes]] = {}
    for item in filter(None, (part.strip() for part in s.webhook_secrets.split(","))):
        provider, _, secret = item.partition(":")
        if not _PROVIDER.match(provider) or len(secret) < MIN_WEBHOOK_SECRET_LENGTH:
            raise ConfigError(
                "WEBHOOK_SECRETS must be provider:secret pairs (provider a-z0-9_-, "
                f"secret at least {MIN_WEBHOOK_SECRET_LENGTH} characters), separated by commas"
            )
        secrets_by_provider.setdefault(provider, []).append(secret.encode())
    if s.payment_provider == "sim" and "stripe" not in secrets_by_provider:
        # The embedded demo verifies the simulator's deliveries with no configuration.
        secrets_by_provider["stripe"] = [_derived_sim_webhook_secret(s)]
    return secrets_by_provider


def provider_webhook_secret(s: Settings) -> bytes:
    """The secret the payment provider signs its webhooks with: the first ``stripe:`` one of
    ``WEBHOOK_SECRETS``, else (PAYMENT_PROVIDER=sim) one derived from SESSION_SECRET."""
    return webhook_secret_map(s)["stripe"][0]


def _derived_sim_webhook_secret(s: Settings) -> bytes:
    import base64

    from vedina.security.keys import derive_key

    key = derive_key(s.session_secret, "provider-sim-webhook")
    return b"whsec_" + base64.urlsafe_b64encode(key).rstrip(b"=")


def _name_variable(message: str) -> str:
    # msgspec says "... - at `$.port`"; name the environment variable instead.
    for field, var in _FIELD_TO_ENV.items():
        message = message.replace(f"`$.{field}`", var)
    return message


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _validate(s: Settings) -> None:
    if not 0 < s.port < 65536:
        raise ConfigError(f"PORT must be between 1 and 65535, got {s.port}")
    if not 0 <= s.worker_metrics_port < 65536:
        raise ConfigError(f"WORKER_METRICS_PORT must be between 0 (off) and 65535, got {s.worker_metrics_port}")
    if s.workers < 0:
        raise ConfigError(f"WORKERS must be 0 (one per core) or more, got {s.workers}")
    if not 1 <= s.shutdown_timeout <= 3_600:
        raise ConfigError(f"SHUTDOWN_TIMEOUT must be between 1 and 3600 seconds, got {s.shutdown_timeout}")
    if s.max_body_bytes < 1024:
        raise ConfigError(f"MAX_BODY_BYTES must be at least 1024, got {s.max_body_bytes}")
    if s.media_accel_redirect and not (s.media_accel_redirect.startswith("/") and s.media_accel_redirect.endswith("/")):
        raise ConfigError(f"MEDIA_ACCEL_REDIRECT must be empty or a path starting and ending with '/', got {s.media_accel_redirect!r}")
    webhook_secret_map(s)  # raises ConfigError naming WEBHOOK_SECRETS
    _validate_payment_provider(s)
    if s.db_pool_size < 1:
        raise ConfigError(f"DB_POOL_SIZE must be at least 1, got {s.db_pool_size}")
    replica_addresses(s)
    if s.near_cache_entries < 0:
        raise ConfigError(f"NEAR_CACHE_ENTRIES must be 0 (no per-worker cache) or more, got {s.near_cache_entries}")
    if s.catalog_cache_ttl_s < 1:
        raise ConfigError(f"CATALOG_CACHE_TTL_S must be at least 1, got {s.catalog_cache_ttl_s}")
    if not 1 <= s.sitemap_page_urls <= 50_000:
        raise ConfigError(f"SITEMAP_PAGE_URLS must be between 1 and 50000, got {s.sitemap_page_urls}")
    if s.upload_max_bytes < 1:
        raise ConfigError(f"UPLOAD_MAX_BYTES must be at least 1, got {s.upload_max_bytes}")
    if s.upload_chunk_max_bytes < 1024:
        raise ConfigError(f"UPLOAD_CHUNK_MAX_BYTES must be at least 1024, got {s.upload_chunk_max_bytes}")
    if s.upload_expire_hours < 1:
        raise ConfigError(f"UPLOAD_EXPIRE_HOURS must be at least 1, got {s.upload_expire_hours}")
    _validate_playback(s)
    if not 1 <= s.progress_flush_seconds <= 3_600:
        raise ConfigError(f"PROGRESS_FLUSH_SECONDS must be between 1 and 3600, got {s.progress_flush_seconds}")
    if s.backup_keep_daily < 1 or s.backup_keep_weekly < 0:
        raise ConfigError("BACKUP_KEEP_DAILY must be at least 1 and BACKUP_KEEP_WEEKLY at least 0, "
                          f"got {s.backup_keep_daily} and {s.backup_keep_weekly}")
    if s.transcode_preset not in X264_PRESETS:
        raise ConfigError(f"TRANSCODE_PRESET must be one of {', '.join(X264_PRESETS)}, got {s.transcode_preset!r}")
    if s.env == "production":
        if s.session_secret in _DEVELOPMENT_SECRETS or len(s.session_secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"SESSION_SECRET must be set to a random value of at least {MIN_SECRET_LENGTH} characters in production"
            )
        if not s.api_key_encryption_key:
            raise ConfigError("API_KEY_ENCRYPTION_KEY must be set in production (base64 of 32 random bytes)")
        if s.payment_provider == "sim":  # fake payments would grant real access
            raise ConfigError("PAYMENT_PROVIDER=sim is for development and tests: set PAYMENT_PROVIDER=stripe "
                              "(with STRIPE_API_KEY and a stripe: secret in WEBHOOK_SECRETS) in production")
    _validate_identity_keys(s)
    _validate_rate_limits(s)
    parse_networks(s.metrics_allowed_ips, var="METRICS_ALLOWED_IPS")
    parse_sentinels(s)
    if not 10 <= s.redis_timeout_ms <= 60_000:
        raise ConfigError(f"REDIS_TIMEOUT_MS must be between 10 and 60000, got {s.redis_timeout_ms}")
    _validate_amqp(s)


def _validate_amqp(s: Settings) -> None:
    if s.amqp_url and s.amqp_urls:
        raise ConfigError("AMQP_URL and AMQP_URLS are both set: give one node in AMQP_URL or every node in AMQP_URLS")
    if s.amqp_queue_type not in ("", "classic", "quorum"):
        raise ConfigError(f"AMQP_QUEUE_TYPE must be classic or quorum (or empty), got {s.amqp_queue_type!r}")
    var = "AMQP_URLS" if s.amqp_urls else "AMQP_URL"
    nodes = s.amqp_nodes
    if s.amqp_urls and not nodes:
        raise ConfigError("AMQP_URLS must be comma-separated amqp:// or amqps:// URLs")
    if len(set(nodes)) != len(nodes):
        raise ConfigError("AMQP_URLS lists a node twice")
    for url in nodes:
        scheme, sep, rest = url.partition("://")
        if scheme not in ("amqp", "amqps") or not sep or not rest.rpartition("@")[2].split("/")[0]:
            raise ConfigError(f"{var} must be amqp:// or amqps:// URLs with a host, got {_redact_url(url)!r}")


def _redact_url(url: str) -> str:
    """``url`` with its password (if any) hidden, for error messages."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1******@", url)


def _validate_playback(s: Settings) -> None:
    from vedina.storage.schema import PLAN_TIERS

    if not 10 <= s.playback_url_ttl_seconds <= 86_400:
        raise ConfigError(f"PLAYBACK_URL_TTL_SECONDS must be between 10 and 86400, got {s.playback_url_ttl_seconds}")
    if not 3 <= s.playback_session_timeout_seconds <= 3_600:
        raise ConfigError("PLAYBACK_SESSION_TIMEOUT_SECONDS must be between 3 and 3600, "
                          f"got {s.playback_session_timeout_seconds}")
    if not 1 <= s.max_concurrent_streams <= 100:
        raise ConfigError(f"MAX_CONCURRENT_STREAMS must be between 1 and 100, got {s.max_concurrent_streams}")
    if s.playback_default_plan not in ("none", *PLAN_TIERS):
        raise ConfigError(f"PLAYBACK_DEFAULT_PLAN must be none or one of {', '.join(PLAN_TIERS)}, "
                          f"got {s.playback_default_plan!r}")
    for name, value, low, high in (("PAST_DUE_GRACE_DAYS", s.past_due_grace_days, 0, 60),
                                   ("BILLING_RETRY_HOURS", s.billing_retry_hours, 1, 24 * 30),
                                   ("INCOMPLETE_EXPIRE_HOURS", s.incomplete_expire_hours, 1, 24 * 7)):
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")


_STRIPE_KEY = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]{16,}$")


def _validate_payment_provider(s: Settings) -> None:
    if s.stripe_api_base and not re.match(r"^https?://[^/\s?#]+$", s.stripe_api_base):
        raise ConfigError(f"STRIPE_API_BASE must be empty or an http(s) URL without a path, got {s.stripe_api_base!r}")
    if not 0 < s.provider_sim_port < 65536:
        raise ConfigError(f"PROVIDER_SIM_PORT must be between 1 and 65535, got {s.provider_sim_port}")
    if s.payment_provider == "stripe":
        if not _STRIPE_KEY.match(s.stripe_api_key):
            raise ConfigError("STRIPE_API_KEY must be set to your Stripe secret key (sk_live_... or sk_test_...) "
                              "when PAYMENT_PROVIDER=stripe")
        if "stripe" not in webhook_secret_map(s):
            raise ConfigError("WEBHOOK_SECRETS must hold the Stripe endpoint's signing secret (stripe:whsec_...) "
                              "when PAYMENT_PROVIDER=stripe")


def _validate_identity_keys(s: Settings) -> None:
    import base64
    import binascii

    def decode(var: str, text: str) -> bytes:
        try:
            return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise ConfigError(f"{var} must be base64") from None

    if s.api_key_encryption_key and len(decode("API_KEY_ENCRYPTION_KEY", s.api_key_encryption_key)) != 32:
        raise ConfigError("API_KEY_ENCRYPTION_KEY must be base64 of exactly 32 bytes")
    if s.jwt_signing_keys:
        for item in s.jwt_signing_keys.split(","):
            kid, _, secret = item.strip().partition(":")
            if not kid or len(decode("JWT_SIGNING_KEYS", secret)) < 32:
                raise ConfigError("JWT_SIGNING_KEYS must be kid:base64-secret pairs with secrets of at least 32 bytes")


# -- rate limits ----------------------------------------------------------------

RATE_LIMIT_VARS = {
    "auth": "RATE_LIMIT_AUTH",
    "stream": "RATE_LIMIT_STREAM",
    "api": "RATE_LIMIT_API",
    "login_account": "RATE_LIMIT_LOGIN_ACCOUNT",
    "comments": "RATE_LIMIT_COMMENTS",
}
_RATE = re.compile(r"^(\d+)\s*/\s*(\d*)\s*(ms|s|m|h)(?:\s+burst\s+(\d+))?$", re.IGNORECASE)
_UNIT_US = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}
_MAX_TAU_US = 10**15  # about 31 years: keeps every GCRA value exact in Lua's doubles


class Rate(msgspec.Struct, frozen=True):
    """A parsed limit: ``count`` requests per ``period_us`` microseconds, ``burst`` at once."""

    count: int
    period_us: int
    burst: int

    @property
    def interval_us(self) -> int:
        """GCRA's emission interval T, in the integer unit both tiers share."""
        return self.period_us // self.count


def parse_rate(var: str, text: str) -> Rate | None:
    """``"300/60s burst 100"`` -> Rate(300, 60_000_000, 100); ``"off"`` -> None.

    >>> parse_rate("RATE_LIMIT_API", "10/m")
    Rate(count=10, period_us=60000000, burst=10)
    """
    text = text.strip()
    if text.lower() == "off":
        return None
    match = _RATE.match(text)
    if not match:
        raise ConfigError(f"{var} must look like '300/60s burst 100' (period in ms, s, m or h) or 'off', got {text!r}")
    count, amount, unit, burst = match.groups()
    rate = Rate(int(count), int(amount or 1) * _UNIT_US[unit.lower()], int(burst) if burst else int(count))
    if rate.count < 1 or rate.burst < 1:
        raise ConfigError(f"{var}: count and burst must be at least 1, got {text!r}")
    if rate.interval_us < 1:
        raise ConfigError(f"{var}: period / count must be at least 1 microsecond, got {text!r}")
    if rate.interval_us * rate.burst > _MAX_TAU_US:
        raise ConfigError(f"{var}: period * burst / count is too long, got {text!r}")
    return rate


def parse_networks(text: str, *, var: str = "TRUSTED_PROXIES") -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{var} must be comma-separated IP addresses or CIDR networks, got {item!r}") from None
    return tuple(networks)


def parse_trusted_proxies(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return parse_networks(text, var="TRUSTED_PROXIES")


def _validate_rate_limits(s: Settings) -> None:
    for policy, var in RATE_LIMIT_VARS.items():
        parse_rate(var, getattr(s, f"rate_limit_{policy}"))
    parse_trusted_proxies(s.trusted_proxies)
    if not 1 <= s.rate_limit_redis_timeout_ms <= 10_000:
        raise ConfigError(f"RATE_LIMIT_REDIS_TIMEOUT_MS must be between 1 and 10000, got {s.rate_limit_redis_timeout_ms}")


# -- Redis Sentinel -----------------------------------------------------------

_SERVICE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def parse_sentinels(s: Settings) -> list[tuple[str, int]]:
    """``REDIS_SENTINELS`` as (host, port) pairs ("[::1]:26379" for IPv6); [] when unset.

    >>> parse_sentinels(load_settings({"REDIS_SENTINELS": "10.0.0.5:26379,[::1]:26380"}))
    [('10.0.0.5', 26379), ('::1', 26380)]
    """
    if not s.redis_sentinels:
        return []
    sentinels = []
    for item in filter(None, (part.strip() for part in s.redis_sentinels.split(","))):
        host, _, port = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c in host for c in "/@ []"):
            raise ConfigError(f"REDIS_SENTINELS must be comma-separated host:port pairs, got {item!r}")
        sentinels.append((host, int(port)))
    if not sentinels:
        raise ConfigError("REDIS_SENTINELS must name at least one host:port")
    if not _SERVICE_NAME.match(s.redis_sentinel_service):
        raise ConfigError("REDIS_SENTINEL_SERVICE must be the master's name in `sentinel monitor` "
                          f"(letters, digits, . _ -), got {s.redis_sentinel_service!r}")
    if s.redis_url and not s.redis_url.startswith("redis://"):
        # Only the credentials and the db number of the URL are used with Sentinel.
        raise ConfigError("REDIS_URL must be a redis:// URL (its password and db number) when REDIS_SENTINELS is set, "
                          f"got scheme {s.redis_url.split(':', 1)[0]!r}")
    from urllib.parse import urlsplit

    if s.redis_url and not re.fullmatch(r"\d*", urlsplit(s.redis_url).path.strip("/")):
        raise ConfigError("REDIS_URL's path must be a db number (redis://:password@host/0) when REDIS_SENTINELS is set")
    return sentinels


# -- read replicas ------------------------------------------------------------


def replica_addresses(s: Settings) -> list[tuple[str, int]]:
    """``DB_REPLICA_HOSTS`` as (host, port) pairs (port default: DB_PORT); [] when unset.

    >>> replica_addresses(load_settings({"DB_HOST": "db1", "DB_REPLICA_HOSTS": "db2,db3:3307"}))
    [('db2', 3306), ('db3', 3307)]
    """
    if not s.db_replica_hosts:
        return []
    if not s.db_host:
        raise ConfigError("DB_REPLICA_HOSTS needs DB_HOST (replicas are for the MariaDB profile)")
    if not 1 <= s.db_replica_max_lag_s <= 3_600:
        raise ConfigError(f"DB_REPLICA_MAX_LAG_S must be between 1 and 3600, got {s.db_replica_max_lag_s}")
    if not 0 <= s.db_replica_wait_ms <= 10_000:
        raise ConfigError(f"DB_REPLICA_WAIT_MS must be between 0 and 10000, got {s.db_replica_wait_ms}")
    replicas = []
    for item in filter(None, (part.strip() for part in s.db_replica_hosts.split(","))):
        host, colon, port = item.rpartition(":") if ":" in item.lstrip("[").rpartition("]")[2] else (item, "", "")
        bracketed = host.startswith("[") and host.endswith("]")
        host = host[1:-1] if bracketed else host
        if (not host or any(c in host for c in "/@ []?#") or (":" in host and not bracketed)
                or (colon and not (port.isdigit() and 0 < int(port) < 65536))):
            raise ConfigError(f"DB_REPLICA_HOSTS must be comma-separated host[:port] entries, got {item!r}")
        replicas.append((host, int(port) if colon else s.db_port))
    if not replicas:
        raise ConfigError("DB_REPLICA_HOSTS must name at least one host[:port]")
    if len(set(replicas)) != len(replicas) or (s.db_host, s.db_port) in replicas:
        raise ConfigError("DB_REPLICA_HOSTS lists a host twice, or the primary (DB_HOST) itself")
    return replicas
