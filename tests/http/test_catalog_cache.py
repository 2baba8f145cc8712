"""Catalog reads from memory: ETag and 304 on both servers, and writes from another
process seen by every worker within the bound (both profiles; across hosts on the real one)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import PROFILES, SERVERS, LiveServer, require_profile
from vedina.storage.invalidation import PROPAGATION_BOUND


@pytest.fixture(params=[(s, p) for p in PROFILES for s in SERVERS], ids=lambda sp: f"{sp[0]}-{sp[1]}")
def client(request, live_servers):
    server, profile = request.param
    with httpx.Client(base_url=live_servers(server, profile).base_url, timeout=10) as http:
        yield http


@pytest.mark.parametrize("path", ["/api/movies/1", "/api/movies", "/api/movies?limit=2&sort=title"])
def test_catalog_answers_carry_an_etag_and_304_when_it_matches(client, path):
    first = client.get(path)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
    assert first.headers["cache-control"] == "no-cache"
    assert client.get(path).headers["etag"] == etag, "the same answer has the same tag"
    for if_none_match in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        again = client.get(path, headers={"if-none-match": if_none_match})
        assert again.status_code == 304, if_none_match
        assert again.content == b"" and again.headers["etag"] == etag
        assert again.headers["x-content-type-options"] == "nosniff" and again.headers["x-request-id"]
    changed = client.get(path, headers={"if-none-match": '"something-else"'})
    assert changed.status_code == 200 and changed.content == first.content


def test_pages_and_movies_have_different_tags(client):
    assert client.get("/api/movies/1").headers["etag"] != client.get("/api/movies/2").headers["etag"]
    assert client.get("/api/movies?limit=1").headers["etag"] != client.get("/api/movies?limit=2").headers["etag"]


def test_an_unknown_movie_is_404_every_time(client):
    for _ in range(3):
        response = client.get("/api/movies/987654")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert "etag" not in response.headers


# -- writes in another process reach every worker ------------------------------------------

RETITLE = """
import asyncio, sys
import sqlalchemy as sa
from vedina.composition import open_services
from vedina.config import load_settings
from vedina.storage.schema import movies

async def main(movie_id, title):
    services = await open_services(load_settings())
    try:
        async with services.resources.engine.begin() as conn:
            await conn.execute(sa.update(movies).where(movies.c.id == movie_id).values(title=title))
        await services.catalog.movies_changed(movie_id)
    finally:
        await services.close()

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


def retitle(env: dict[str, str], movie_id: int, title: str) -> None:
    import os

    subprocess.run([sys.executable, "-c", RETITLE, str(movie_id), title], env={**os.environ, **env},
                   check=True, timeout=60, capture_output=True)


def titles_everywhere(clients: list[httpx.Client], movie_id: int) -> set[str]:
    seen = set()
    for c in clients:
        seen.add(c.get(f"/api/movies/{movie_id}").json()["title"])
        seen.add(next(m["title"] for m in c.get("/api/movies?limit=100").json()["items"] if m["id"] == movie_id))
    return seen


def wait_for_titles(clients, movie_id: int, expected: str, bound: float) -> float:
    started = time.monotonic()
    while (seen := titles_everywhere(clients, movie_id)) != {expected}:
        assert time.monotonic() - started < bound, seen
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.parametrize("profile", PROFILES)
def test_a_catalog_write_in_another_process_reaches_every_worker(live_servers, live_data, profile):
    require_profile(profile)
    live = live_servers("granian", profile)
    clients = [httpx.Client(base_url=live.base_url, timeout=10) for _ in range(8)]
    try:
        original = clients[0].get("/api/movies/3").json()["title"]
        assert titles_everywhere(clients, 3) == {original}  # cached now, on whichever workers answered
        try:
            retitle(live.env, 3, "Game of Life (Director's Cut)")
            wait_for_titles(clients, 3, "Game of Life (Director's Cut)", PROPAGATION_BOUND)
        finally:
            retitle(live.env, 3, original)
        wait_for_titles(clients, 3, original, PROPAGATION_BOUND)
    finally:
        for c in clients:
            c.close()


def test_a_catalog_write_reaches_another_host_and_its_shared_cache(live_servers, live_data, tmp_path):
    """Two hosts (own shared-memory tables), one database and Redis: the other host's near
    cache and the shared Redis copy both drop the old answer."""
    require_profile("real")
    first = live_servers("granian", "real")
    env = {**first.env, "DATA_DIR": str(tmp_path), "MEDIA_ROOT": first.env.get("MEDIA_ROOT") or f"{first.env['DATA_DIR']}/media",
           "RATE_LIMIT_SHM_PATH": str(tmp_path / "rl.shm"), "INVALIDATION_SHM_PATH": str(tmp_path / "gen.shm")}
    second = LiveServer(server="granian", env=env, workers=2)
    clients = [httpx.Client(base_url=url, timeout=10) for url in (first.base_url, second.base_url) for _ in range(4)]
    try:
        original = clients[0].get("/api/movies/2").json()["title"]
        assert titles_everywhere(clients, 2) == {original}
        try:
            retitle(env, 2, "Mandelbrot Nights II")  # written from the second host's side
            wait_for_titles(clients, 2, "Mandelbrot Nights II", PROPAGATION_BOUND)
        finally:
            retitle(env, 2, original)
        wait_for_titles(clients, 2, original, PROPAGATION_BOUND)
        asyncio.run(_assert_shared_copy_current(first.env, 2, original))
    finally:
        for c in clients:
            c.close()
        second.stop()


async def _assert_shared_copy_current(env: dict[str, str], movie_id: int, title: str) -> None:
    import msgspec
    import redis.asyncio as redis

    client = redis.from_url(env["REDIS_URL"])
    try:
        version = await client.get(f"vedina:cache:v:catalog:movie:{movie_id}")
        document = await client.get(f"vedina:cache:d:movie:{movie_id}")
        assert version is not None and document is not None
        stored_version, _, body = document.partition(b"\n")
        assert stored_version == version and msgspec.json.decode(body)["title"] == title
    finally:
        await client.aclose()


def test_probing_unknown_movies_fills_no_cache(live_servers, live_data):
    """A scan of ids costs database reads (rate limited), never cache entries."""
    require_profile("real")
    live = live_servers("granian", "real")
    with httpx.Client(base_url=live.base_url, timeout=10) as http:
        for movie_id in range(7_000_000, 7_000_020):
            assert http.get(f"/api/movies/{movie_id}").status_code == 404

    async def stored() -> list:
        import redis.asyncio as redis

        client = redis.from_url(live.env["REDIS_URL"])
        try:
            return [key async for key in client.scan_iter("vedina:cache:d:movie:70000*")]
        finally:
            await client.aclose()

    assert asyncio.run(stored()) == []
