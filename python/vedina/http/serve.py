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


def prepare_rate_limit_table(settings: Settings) -> None:
    """Create the host rate-limit table before the workers start, replacing a
    stale one at the default path (another version or capacity, e.g. after an
    upgrade), so that every worker opens the same, valid table."""
    if not settings.rate_limit_enabled:
        return
    from vedina._native import HostRateLimiter
    from vedina.security.ratelimit.limiter import default_shm_path

    path = settings.rate_limit_shm_path or str(default_shm_path(settings))
    try:
        HostRateLimiter(path)
    except ValueError:
        if settings.rate_limit_shm_path:
            raise  # an operator's explicit path: say so rather than delete it
        os.unlink(path)
        HostRateLimiter(path)


def serve_granian(settings: Settings) -> None:
    prepare_multiprocess_dir(settings.data_dir, settings.port)
    prepare_rate_limit_table(settings)
    from granian.constants import Interfaces
    from granian.server import Server

    # Every worker loads the settings again: hand them the development
    # SESSION_SECRET generated here, so tokens signed by one worker verify in all.
    if not os.environ.get("SESSION_SECRET"):
        os.environ["SESSION_SECRET"] = settings.session_secret
    server = Server(
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
        log_level=settings.log_level if settings.log_level != "warning" else "warn",
    )
    server.serve()


def serve_robyn(settings: Settings) -> None:
    prepare_multiprocess_dir(settings.data_dir, settings.port)
    prepare_rate_limit_table(settings)
    from vedina.app import create_app
    from vedina.logs import configure_logging

    configure_logging(settings.log_level)
    app = create_app(settings, server="robyn")
    app.start(host=settings.host, port=settings.port, _check_port=False)
