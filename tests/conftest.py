"""Shared fixtures: storage profiles, and live servers started as real processes.

Every storage-facing test runs twice, on the embedded profile (SQLite file,
in-process cache and jobs) and on the real one (MariaDB, Redis, RabbitMQ
started by scripts/services.sh). The real profile is selected by the
VEDINA_TEST_* variables that scripts/test.sh exports; without them (a quick
local run) those cases are skipped, and in CI they are required.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from vedina.config import Settings, load_settings

PROFILES = ["embedded", "real"]
# The simulated payment provider signs with either secret (a rotation in progress).
WEBHOOK_SECRETS = "simpay:whsec_current_0123456789abcdef,simpay:whsec_previous_0123456789abcdef"
SERVERS = ["granian", "robyn"]
# One per test session, shared by every server it starts: servers on one database act as
# hosts of one deployment (a token signed by one verifies on all).
SESSION_SECRET = secrets.token_urlsafe(32)
VEDINA = str(Path(sys.executable).with_name("vedina"))
# Databases and Redis numbers of the real profile; overridable so that two
# checkouts can run their suites side by side on one set of services.
TEST_DB = os.environ.get("VEDINA_TEST_DB_NAME", "vedina_test")
LIVE_DB = os.environ.get("VEDINA_TEST_LIVE_DB_NAME", "vedina_live")
TEST_REDIS_DB = int(os.environ.get("VEDINA_TEST_REDIS_DB", "2"))
LIVE_REDIS_DB = int(os.environ.get("VEDINA_TEST_LIVE_REDIS_DB", "1"))


def real_services_available() -> bool:
    return bool(os.environ.get("VEDINA_TEST_DB_HOST"))


def profile_env(profile: str, data_dir: Path, *, database: str, redis_db: int, amqp_prefix: str) -> dict[str, str]:
    env = {
        "DATA_DIR": str(data_dir), "LOG_LEVEL": "warning", "VEDINA_ENV": "test", "WEBHOOK_SECRETS": WEBHOOK_SECRETS,
        # Suites send hundreds of requests from 127.0.0.1; the rate-limit tests start their own servers.
        "RATE_LIMIT_API": "100000/1s burst 100000", "RATE_LIMIT_STREAM": "100000/1s burst 100000",
        "RATE_LIMIT_AUTH": "100000/1s burst 100000",
        "RATE_LIMIT_SHM_PATH": str(data_dir / "ratelimit.shm"),
        "INVALIDATION_SHM_PATH": str(data_dir / "generations.shm"),
        "SESSION_SECRET": SESSION_SECRET,
        # Suites log in right after registering; tests/identity/test_verification.py turns it on.
        "REQUIRE_VERIFIED_EMAIL": "false",
        # Accounts without a subscription may stream everything (the billing suites set "none").
        "PLAYBACK_DEFAULT_PLAN": "premium",
        # Every server and in-process provider of the session talks to one `vedina provider-sim`.
        "PAYMENT_PROVIDER": "sim", "STRIPE_API_BASE": session_provider_sim().url,
    }
    if profile == "real":
        env.update(
            DB_HOST=os.environ["VEDINA_TEST_DB_HOST"],
            DB_NAME=database,
            DB_USER="vedina",
            DB_PASSWORD=os.environ.get("VEDINA_TEST_DB_PASSWORD", ""),
            REDIS_URL=f"{os.environ['VEDINA_TEST_REDIS']}/{redis_db}",
            AMQP_URL=os.environ["VEDINA_TEST_AMQP"],
            AMQP_QUEUE_PREFIX=amqp_prefix,
        )
    return env


def require_profile(profile: str) -> None:
    if profile == "real" and not real_services_available():
        if os.environ.get("CI"):
            pytest.fail("CI must run the real profile: use scripts/test.sh")
        pytest.skip("real services not configured (run scripts/test.sh)")


async def reset_database(settings: Settings) -> None:
    """Fresh schema: drop every table (whatever revision left them), then migrate to head."""
    from vedina.storage.database import create_engine
    from vedina.storage.migrate import upgrade

    def drop_everything(sync_conn) -> None:
        existing = sa.MetaData()
        existing.reflect(sync_conn)
        existing.drop_all(sync_conn)

    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.run_sync(drop_everything)
    await engine.dispose()
    await upgrade(settings)


# -- storage profiles (in-process) ------------------------------------------------

_migrated: set[str] = set()


def fresh_database(profile: str, env: dict[str, str]) -> None:
    """An empty, migrated database for a live server's ``env`` (on the real profile its Redis db emptied too)."""
    if profile == "real":
        import asyncio

        import redis

        asyncio.run(reset_database(load_settings(env)))
        redis.from_url(env["REDIS_URL"]).flushdb()
    else:
        run_cli(env, "migrate")


@pytest.fixture(params=PROFILES)
def profile(request) -> str:
    require_profile(request.param)
    return request.param


@pytest.fixture
async def settings(profile: str, tmp_path: Path) -> Settings:
    env = profile_env(profile, tmp_path, database=TEST_DB, redis_db=TEST_REDIS_DB, amqp_prefix=f"vt-{uuid.uuid4().hex[:8]}")
    settings = load_settings(env)
    if profile == "embedded":
        from vedina.storage.migrate import upgrade

        await upgrade(settings)
        return settings
    if "real" not in _migrated:
        await reset_database(settings)
        _migrated.add("real")
    from vedina.storage.database import create_engine
    from vedina.storage.schema import metadata

    engine = create_engine(settings)
    async with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(sa.delete(table))
    await engine.dispose()
    import redis.asyncio as redis

    client = redis.from_url(settings.redis_url)
    await client.flushdb()
    await client.aclose()
    return settings


@pytest.fixture
async def resources(settings: Settings):
    from vedina.storage.resources import open_resources

    res = await open_resources(settings)
    yield res
    await res.close()


# -- live servers (real processes) ------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(base_url: str, process: subprocess.Popen, *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base_url} not healthy after {timeout}s")


class LiveServer:
    def __init__(self, *, server: str, env: dict[str, str], workers: int = 2) -> None:
        self.server = server
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.process = subprocess.Popen(
            [VEDINA, "serve", "--server", server, "--workers", str(workers), "--port", str(self.port)],
            env={**os.environ, **env},
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(env["DATA_DIR"]) / f"{server}-{self.port}.log", "wb"),
        )
        wait_until_healthy(self.base_url, self.process)

    def stop(self) -> None:
        if self.process.poll() is None:
            # Robyn's server stops on SIGINT but ignores SIGTERM.
            os.killpg(self.process.pid, signal.SIGINT if self.server == "robyn" else signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class ProviderSim:
    """A `vedina provider-sim` process on a free port: ``url`` for the adapter (STRIPE_API_BASE),
    ``control`` for its /_sim/ API (behaviours, reset, requests, charges, events, settle, deliver,
    webhook target). It signs events with the secret every profile_env server verifies."""

    API_KEY = "sk_test_vedina_sim"

    def __init__(self) -> None:
        from vedina.config import provider_webhook_secret
        from vedina.provider_sim import SimControl

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.webhook_secret = provider_webhook_secret(load_settings({"SESSION_SECRET": SESSION_SECRET}))
        self.control = SimControl(self.url)
        # Its log is kept only if it fails (stop() removes it).
        self.log_path = Path(tempfile.gettempdir()) / f"vedina-provider-sim-{self.port}.log"
        self.process = subprocess.Popen(
            [VEDINA, "provider-sim", "--port", str(self.port), "--webhook-secret", self.webhook_secret.decode()],
            env={**os.environ, "LOG_LEVEL": "warning"}, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "wb"),
        )
        deadline = time.monotonic() + 30
        while not self.control.is_simulator():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"vedina provider-sim did not start (exit code {self.process.poll()})")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        if self.process.returncode == 0:
            self.log_path.unlink(missing_ok=True)


_provider_sim: ProviderSim | None = None


def session_provider_sim() -> ProviderSim:
    """The session's simulator, started on first use (profile_env needs its URL)."""
    global _provider_sim
    if _provider_sim is None:
        _provider_sim = ProviderSim()
    return _provider_sim


@pytest.fixture(scope="session", autouse=True)
def _stop_provider_sim() -> Iterator[None]:
    yield
    if _provider_sim is not None:
        _provider_sim.stop()


@pytest.fixture(scope="session")
def provider_sim() -> ProviderSim:
    """The session's simulator (a test that changes its behaviour calls ``control.reset()``)."""
    return session_provider_sim()


def wait_for(predicate, timeout: float = 30, what: str = "the condition"):
    """Poll ``predicate`` until it returns something true (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout}s")


def query_rows(settings: Settings, statement) -> list[dict]:
    """Run one read on the settings' database, from synchronous test code."""
    import asyncio

    from vedina.storage.database import create_engine

    async def run() -> list[dict]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                return [dict(r) for r in (await conn.execute(statement)).mappings().all()]
        finally:
            await engine.dispose()

    return asyncio.run(run())


TEST_PASSWORD = "correct horse battery staple"


def signed_in(base_url: str, env: dict[str, str], *, role: str | None = None, email: str | None = None) -> httpx.Client:
    """A new account (made ``role`` through the CLI), logged in: a client sending its bearer token."""
    http = httpx.Client(base_url=base_url, timeout=30)
    email = email or f"user-{uuid.uuid4().hex[:12]}@example.org"
    registered = http.post("/api/auth/register", json={"email": email, "password": TEST_PASSWORD,
                                                       "display_name": "Tester"})
    assert registered.status_code == 202, registered.text
    if role is not None:
        run_cli(env, "set-role", email, role)
    login = http.post("/api/auth/login", json={"email": email, "password": TEST_PASSWORD})
    assert login.status_code == 200, login.text
    http.headers["authorization"] = f"Bearer {login.json()['access_token']}"
    return http


def run_cli(env: dict[str, str], *args: str) -> None:
    subprocess.run([VEDINA, *args], env={**os.environ, **env}, check=True, capture_output=True, timeout=120)


def wait_for_probe_jobs(settings: Settings, *, timeout: float = 30) -> None:
    """Block until `vedina worker` has run the demo's media.probe jobs from RabbitMQ."""
    import asyncio

    from vedina.storage.database import create_engine
    from vedina.storage.schema import movies

    async def pending() -> int:
        engine = create_engine(settings)
        async with engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(movies).where(movies.c.duration_seconds.is_(None))
            count = (await conn.execute(query)).scalar_one()
        await engine.dispose()
        return count

    deadline = time.monotonic() + timeout
    while asyncio.run(pending()):
        if time.monotonic() > deadline:
            raise TimeoutError("vedina worker did not run the media.probe jobs")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def live_data(tmp_path_factory) -> Iterator:
    """Per profile: a migrated database with the demo movies (and, on the real
    profile, a `vedina worker` that runs the queued probe jobs)."""
    prepared: dict[str, dict[str, str]] = {}
    workers: list[subprocess.Popen] = []

    def get(profile: str) -> dict[str, str]:
        require_profile(profile)
        if profile not in prepared:
            env = profile_env(
                profile, tmp_path_factory.mktemp(f"live-{profile}"),
                database=LIVE_DB, redis_db=LIVE_REDIS_DB, amqp_prefix=f"{LIVE_DB}-live",
            )
            fresh_database(profile, env)
            run_cli(env, "demo-data")
            if profile == "real":
                workers.append(subprocess.Popen([VEDINA, "worker"], env={**os.environ, **env}, start_new_session=True,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                wait_for_probe_jobs(load_settings(env))
            prepared[profile] = env
        return prepared[profile]

    yield get
    for worker in workers:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)  # it finishes the jobs in hand first


@contextmanager
def server_pool(start: Callable[[str], Any]) -> Iterator[Callable[[str], Any]]:
    """``get(profile)`` -> what ``start(profile)`` made (it has a ``live`` LiveServer), made once
    per profile; every server is stopped on the way out."""
    running: dict[str, Any] = {}

    def get(profile: str) -> Any:
        if profile not in running:
            running[profile] = start(profile)
        return running[profile]

    try:
        yield get
    finally:
        for made in running.values():
            made.live.stop()


@pytest.fixture(scope="session")
def live_servers(live_data) -> Iterator:
    """``live_servers(server, profile)`` -> a running LiveServer, started once per session."""
    running: dict[tuple[str, str], LiveServer] = {}

    def get(server: str, profile: str) -> LiveServer:
        key = (server, profile)
        if key not in running:
            running[key] = LiveServer(server=server, env=live_data(profile))
        return running[key]

    yield get
    for live in running.values():
        live.stop()
