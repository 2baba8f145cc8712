"""The request pipeline in one process: what a request costs in Python, without the network.

Run: python -m pytest benches/bench_pipeline.py -p no:cacheprovider -s --benchmark-columns=mean,ops

Drives the RSGI bridge (``vedina.app:create_rsgi_app``, embedded profile, rate
limiting off) with in-memory RSGI scopes and protocols, 200 requests per
round, next to the bare RSGI app of ``benches/peers/bare_rsgi.py`` — so a
change to the hot path shows its cost in microseconds per request, with
cProfile at hand (``--profile-pipeline`` prints the top functions).
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import sys

import pytest

REQUESTS = 200


class _Headers(dict):
    def get(self, key, default=None):
        return super().get(key, default)


class Scope:
    proto, http_version, scheme, authority = "http", "1.1", "http", None
    client, server, query_string = "127.0.0.1:50000", "127.0.0.1:8000", ""

    def __init__(self, path: str, headers: dict[str, str]) -> None:
        path, _, self.query_string = path.partition("?")
        self.method, self.path, self.headers = "GET", path, _Headers(headers)


class Protocol:
    """Records the status; the body goes nowhere."""

    status = 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        raise StopAsyncIteration

    def response_bytes(self, status, headers, body):
        self.status = status

    def response_empty(self, status, headers):
        self.status = status

    def response_str(self, status, headers, body):
        self.status = status


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """(event loop, Vedina's RSGI app, an access token) on a fresh embedded database with one movie."""
    data_dir = tmp_path_factory.mktemp("pipeline")
    env = {"DATA_DIR": str(data_dir), "LOG_LEVEL": "warning", "RATE_LIMIT_ENABLED": "false",
           "SESSION_SECRET": "bench-pipeline-secret-0123456789abcdef", "REQUIRE_VERIFIED_EMAIL": "false"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # create_rsgi_app reads the settings from the environment, as a worker does
    sys.argv = sys.argv[:1]  # Robyn reads the command line when an app is built
    from vedina.app import create_rsgi_app
    from vedina.config import load_settings
    from vedina.storage.clock import utcnow
    from vedina.storage.migrate import upgrade
    from vedina.storage.movies import MovieRepository

    loop = asyncio.new_event_loop()
    settings = load_settings()
    loop.run_until_complete(upgrade(settings))
    app = create_rsgi_app()
    loop.run_until_complete(app.app.state.startup())
    services = app.app.state.services

    async def prepare() -> str:
        async with services.resources.engine.begin() as conn:
            await MovieRepository.insert(conn, slug="bench", title="Bench", synopsis="", maturity_rating="G", genres=[],
                                         status="published", published_at=utcnow())
        await services.accounts.register(email="bench@example.org", password="correct horse battery staple",
                                         display_name="Bench")
        pair = await services.sessions.login(email="bench@example.org", password="correct horse battery staple")
        return pair.access_token

    token = loop.run_until_complete(prepare())
    yield loop, app, token
    loop.run_until_complete(app.app.state.shutdown())
    loop.close()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _drive(loop, app, path: str, headers: dict[str, str]) -> int:
    protocol = Protocol()

    async def many() -> None:
        for _ in range(REQUESTS):
            await app.__rsgi__(Scope(path, headers), protocol)

    loop.run_until_complete(many())
    return protocol.status


HEADERS = {"host": "127.0.0.1:8000", "user-agent": "bench", "accept": "*/*"}


@pytest.mark.parametrize(
    ("path", "bearer"),
    [("/health", False), ("/api/movies/1", False), ("/api/movies/1", True), ("/api/users/me", True),
     ("/api/movies?limit=20", False)],
    ids=["health", "movie", "movie-bearer", "me-bearer", "page"],
)
def test_vedina_pipeline(benchmark, pipeline, path, bearer):
    loop, app, token = pipeline
    headers = {**HEADERS, **({"authorization": f"Bearer {token}"} if bearer else {})}
    assert _drive(loop, app, path, headers) == 200  # warm: caches filled
    benchmark(_drive, loop, app, path, headers)
    print(f"\n{path}{' +bearer' if bearer else ''}: {benchmark.stats['mean'] / REQUESTS * 1e6:.1f} us/request")
    if os.environ.get("PROFILE_PIPELINE"):
        profile = cProfile.Profile()
        profile.runcall(_drive, loop, app, path, headers)
        pstats.Stats(profile).sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(int(os.environ.get("PROFILE_LINES", "15")))


def test_bare_rsgi(benchmark):
    from benches.peers.bare_rsgi import app

    loop = asyncio.new_event_loop()
    try:
        benchmark(_drive, loop, type("Bare", (), {"__rsgi__": staticmethod(app)})(), "/", HEADERS)
        print(f"\nbare RSGI app: {benchmark.stats['mean'] / REQUESTS * 1e6:.1f} us/request")
    finally:
        loop.close()
