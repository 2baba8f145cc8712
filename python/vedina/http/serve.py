"""Starting a server: Granian (default, multi-process RSGI) or Robyn's own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vedina.config import Settings


def prepare_multiprocess_dir(data_dir: str, port: int) -> None:
    """Give worker processes a fresh prometheus multiprocess directory.

    Must run before anything imports prometheus_client (it picks its storage
    mode at import), so this module does not import vedina.metrics.
    """
    path = Path(data_dir, f"metrics-{port}").resolve()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def _open_or_replace(open_table, path: str, *, explicit: bool) -> None:
    try:
        open_table(path)
    except ValueError:
        if explicit:
            raise  # an operator's explicit path: say so rather than delete it
        os.unlink(path)
        open_table(path)


def prepare_shared_tables(settings: Settings) -> None:
    """Create the host's shared-memory tables (rate limits, invalidation
    generations) before the workers start, replacing a stale one at a default
    path (another version or capacity, e.g. after an upgrade), so that every
    worker opens the same, valid table."""
    from vedina._native import GenerationTable, HostRateLimiter
    from vedina.security.ratelimit.limiter import default_shm_path
    from vedina.storage.invalidation import default_table_path

    if settings.rate_limit_enabled:
        path = settings.rate_limit_shm_path or str(default_shm_path(settings))
        _open_or_replace(HostRateLimiter, path, explicit=bool(settings.rate_limit_shm_path))
    _open_or_replace(GenerationTable, str(default_table_path(settings)), explicit=bool(settings.invalidation_shm_path))


def clear_drain(settings: Settings) -> None:
    """A drain (`vedina drain`) lasts until the instance restarts: a fresh start is ready."""
    settings.drain_path.unlink(missing_ok=True)


def serve_granian(settings: Settings) -> None:
    prepare_multiprocess_dir(settings.data_dir, settings.port)
    prepare_shared_tables(settings)
    clear_drain(settings)
    from granian.constants import Interfaces

    from vedina.http.rolling import RollingServer

    # Every worker loads the settings again: hand them the development
    # SESSION_SECRET generated here, so tokens signed by one worker verify in all.
    if not os.environ.get("SESSION_SECRET"):
        os.environ["SESSION_SECRET"] = settings.session_secret
    # SIGHUP replaces the workers one at a time, SIGTERM lets in-flight requests finish:
    # see vedina.http.rolling and docs/adr/0016-zero-downtime-releases.md.
    server = RollingServer(
        "vedina.app:create_rsgi_app",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.RSGI,
        factory=True,
        workers=settings.worker_count,
        websockets=False,
        # A worker that dies is replaced, so one crash never shrinks the pool.
        respawn_failed_workers=True,
        respawn_interval=0.5,
        backpressure=settings.backpressure or None,
        workers_max_rss=settings.worker_max_rss_mib or None,
        workers_kill_timeout=settings.shutdown_timeout,
        log_level=settings.log_level if settings.log_level != "warning" else "warn",
    )
    server.serve()


def serve_robyn(settings: Settings) -> None:
    prepare_multiprocess_dir(settings.data_dir, settings.port)
    prepare_shared_tables(settings)
    clear_drain(settings)
    from vedina.app import create_app
    from vedina.logs import configure_logging

    configure_logging(settings.log_level)
    app = create_app(settings, server="robyn")
    app.start(host=settings.host, port=settings.port, _check_port=False)
