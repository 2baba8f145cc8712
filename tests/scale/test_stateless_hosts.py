"""Stateless app hosts (issue 13): nothing one host keeps is needed by another.

Two independent Vedina servers, host A and host B, each with its own DATA_DIR (so their own
shared-memory rate-limit and invalidation tables, lock files and logs), share what a deployment
shares: the MariaDB database, Redis, RabbitMQ, the session secret and one MEDIA_ROOT (a shared
filesystem in production). Every test starts something on A and finishes it on B (or the other
way round) with real requests: a tus upload, a login session, an idempotent payment, a playback
session and a rate-limit budget.

Only the real profile applies: the embedded profile keeps its database (SQLite), cache, sessions
and limits on the one host, by design.

The test process holds both hosts' outbox-relay locks, so jobs the requests enqueue (an upload's
``media.probe``, billing mail) stay in the outbox: no consumer is needed, and no queue is left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import (
    PROFILES,
    TEST_DB,
    TEST_PASSWORD,
    TEST_REDIS_DB,
    LiveServer,
    fresh_database,
    profile_env,
    query_rows,
    require_profile,
    run_cli,
)
from tests.uploads.conftest import TUS, metadata_header
from vedina.config import load_settings
from vedina.storage.clock import utcnow
from vedina.storage.database import create_engine
from vedina.storage.host_files import host_file
from vedina.storage.invalidation import PROPAGATION_BOUND
from vedina.storage.outbox import HostLock
from vedina.storage.schema import media_assets, movies, uploads

pytestmark = pytest.mark.slow

CHUNK = 256 * 1024
SCREENS = 2  # MAX_CONCURRENT_STREAMS of both hosts
LOGIN_BURST = 10  # RATE_LIMIT_LOGIN_ACCOUNT's default burst
HOST_ENV = {
    "MAX_CONCURRENT_STREAMS": str(SCREENS),
    "UPLOAD_CHUNK_MAX_BYTES": str(2 * 1024 * 1024),
    # The login guard keeps its default budget; a Redis decision slowed down by the loaded machine
    # must not fall back to the host tier (a budget of that host alone) and blur what is tested.
    "RATE_LIMIT_REDIS_TIMEOUT_MS": "5000",
}


class Hosts:
    """Host A and host B of one deployment, plus reads of the shared database."""

    def __init__(self, base: Path) -> None:
        self.media_root = base / "shared-media"
        self.media_root.mkdir()
        prefix = f"{TEST_DB}-stateless"  # fixed: reruns reuse the same (empty) queues
        self.envs = []
        for name in ("host-a", "host-b"):
            data_dir = base / name
            data_dir.mkdir()
            env = {**profile_env("real", data_dir, database=TEST_DB, redis_db=TEST_REDIS_DB, amqp_prefix=prefix),
                   **HOST_ENV, "MEDIA_ROOT": str(self.media_root)}
            self.envs.append(env)
        self.settings = load_settings(self.envs[0])
        fresh_database("real", self.envs[0])
        self.relay_locks = [HostLock(host_file(load_settings(env), "relay")) for env in self.envs]
        assert all(lock.try_acquire() for lock in self.relay_locks)
        # One worker each: a host's near caches are surely warm when the other host changes something.
        with ThreadPoolExecutor(2) as pool:  # both start at once: half the waiting
            started = [pool.submit(LiveServer, server="granian", env=env, workers=1) for env in self.envs]
        self.servers = [future.result() for future in started if future.exception() is None]
        if len(self.servers) < 2:
            self.stop()
            raise next(future.exception() for future in started if future.exception() is not None)
        self.a, self.b = self.servers

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        for lock in self.relay_locks:
            lock.release()

    def client(self, host: LiveServer, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=host.base_url, timeout=30, headers=headers)

    def register(self, host: LiveServer, *, role: str | None = None) -> str:
        """A new account's email, registered on ``host`` (``role`` given by the CLI)."""
        address = f"stateless-{uuid.uuid4().hex[:12]}@example.org"
        with self.client(host) as http:
            answer = http.post("/api/auth/register", json={"email": address, "password": TEST_PASSWORD,
                                                           "display_name": "Host hopper"})
            assert answer.status_code == 202, answer.text
        if role is not None:
            run_cli(self.envs[0], "set-role", address, role)
        return address

    def login(self, host: LiveServer, address: str, password: str = TEST_PASSWORD) -> httpx.Response:
        with self.client(host) as http:
            return http.post("/api/auth/login", json={"email": address, "password": password})

    def token(self, host: LiveServer, *, role: str | None = None) -> str:
        answer = self.login(host, self.register(host, role=role))
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]

    def movie(self, *, video: bytes | None = None) -> dict:
        """A published movie (in no cache); with ``video``, a ready source asset whose file is in
        the shared MEDIA_ROOT."""
        async def insert(conn):
            now = utcnow()
            movie_id = (await conn.execute(sa.insert(movies).values(
                slug=f"hop-{uuid.uuid4().hex[:10]}", title="Across hosts", original_title="", sort_title="across hosts",
                synopsis="", maturity_rating="G", genres=[], spoken_languages=["en"], subtitle_languages=[],
                plan_tier="basic", status="published", published_at=now, version=1, people_text="", popularity=0,
                rating_count=0, rating_sum=0, rating_avg=0, created_at=now, updated_at=now,
            ))).inserted_primary_key[0]
            made = {"id": movie_id}
            if video is not None:
                relative = f"stateless/{movie_id}/source.mp4"
                path = self.media_root / relative
                path.parent.mkdir(parents=True)
                path.write_bytes(video)
                made["video"] = (await conn.execute(sa.insert(media_assets).values(
                    movie_id=movie_id, kind="video", path=relative, content_type="video/mp4", size_bytes=len(video),
                    label="Source", status="ready", width=1280, height=720, bitrate=1_000_000, created_at=now,
                ))).inserted_primary_key[0]
            return made

        async def run():
            engine = create_engine(self.settings)
            try:
                async with engine.begin() as conn:
                    return await insert(conn)
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def query(self, statement) -> list[dict]:
        return query_rows(self.settings, statement)


@pytest.fixture(scope="module", params=PROFILES)
def hosts(request, tmp_path_factory):
    if request.param == "embedded":
        pytest.skip("the embedded profile keeps its SQLite database, cache, sessions and limits on one host: "
                    "several app hosts need the real profile's shared MariaDB, Redis and RabbitMQ")
    require_profile("real")
    hosts = Hosts(tmp_path_factory.mktemp("stateless"))
    yield hosts
    hosts.stop()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def refused_within(clients: list[httpx.Client], path: str, headers: dict[str, str], expected: int,
                   *, bound: float, **kwargs) -> float:
    """Seconds until every client's request is answered ``expected``; fails past ``bound``."""
    started = time.monotonic()
    while True:
        answers = [c.get(path, headers=headers, **kwargs).status_code for c in clients]
        if answers == [expected] * len(clients):
            return time.monotonic() - started
        assert time.monotonic() - started < bound, answers
        time.sleep(0.01)


# -- the hosts are independent ---------------------------------------------------------------


def test_the_two_hosts_share_only_the_deployments_services_and_media_root(hosts):
    a, b = hosts.envs
    assert a["DATA_DIR"] != b["DATA_DIR"]
    for variable in ("RATE_LIMIT_SHM_PATH", "INVALIDATION_SHM_PATH"):
        assert os.path.realpath(a[variable]) != os.path.realpath(b[variable])
    assert host_file(load_settings(a), "relay") != host_file(load_settings(b), "relay")
    for variable in ("DB_NAME", "REDIS_URL", "AMQP_URL", "SESSION_SECRET", "MEDIA_ROOT"):
        assert a[variable] == b[variable]
    assert hosts.a.process.pid != hosts.b.process.pid and hosts.a.port != hosts.b.port


# -- (a) uploads in progress -------------------------------------------------------------------


def test_a_tus_upload_started_on_one_host_resumes_on_the_other_from_the_offset_it_reports(hosts):
    token = hosts.token(hosts.a, role="editor")
    movie = hosts.movie()
    data = os.urandom(5 * CHUNK + 12_345)
    tus_headers = {**TUS, "content-type": "application/offset+octet-stream"}
    with hosts.client(hosts.a, token) as on_a, hosts.client(hosts.b, token) as on_b:
        created = on_a.post("/api/uploads", headers={**TUS, "upload-length": str(len(data)), "upload-metadata":
                                                     metadata_header(movie_id=str(movie["id"]), filename="hop.mp4")})
        assert created.status_code == 201, created.text
        url = created.headers["location"]
        for offset in (0, CHUNK):  # host A takes two chunks, then the client moves to host B
            sent = on_a.patch(url, content=data[offset:offset + CHUNK],
                              headers={**tus_headers, "upload-offset": str(offset)})
            assert sent.status_code == 204 and sent.headers["upload-offset"] == str(offset + CHUNK)

        status = on_b.head(url, headers=TUS)
        assert status.status_code == 200
        assert status.headers["upload-offset"] == str(2 * CHUNK)
        assert status.headers["upload-length"] == str(len(data))
        stale = on_b.patch(url, content=data[:CHUNK], headers={**tus_headers, "upload-offset": "0"})
        assert stale.status_code == 409 and stale.json()["error"]["details"]["offset"] == 2 * CHUNK

        offset = int(status.headers["upload-offset"])
        while offset < len(data):
            sent = on_b.patch(url, content=data[offset:offset + 2 * CHUNK],
                              headers={**tus_headers, "upload-offset": str(offset)})
            assert sent.status_code == 204, sent.text
            offset = int(sent.headers["upload-offset"])
        assert offset == len(data)

        finished = on_a.head(url, headers=TUS)  # host A sees the upload host B finished
        assert finished.status_code == 200 and finished.headers["upload-offset"] == str(len(data))
        again = on_a.patch(url, content=b"x", headers={**tus_headers, "upload-offset": str(len(data))})
        assert again.status_code in (409, 413)

    [row] = hosts.query(sa.select(uploads).where(uploads.c.id == url.rsplit("/", 1)[-1]))
    assert row["completed_at"] is not None and row["offset_bytes"] == len(data)
    [asset] = hosts.query(sa.select(media_assets).where(media_assets.c.id == row["asset_id"]))
    assert asset["movie_id"] == movie["id"] and asset["size_bytes"] == len(data)
    stored = (hosts.media_root / asset["path"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not (hosts.media_root / "uploads" / f"{row['id']}.part").exists()


# -- (b) login sessions --------------------------------------------------------------------------


def test_a_session_opened_on_one_host_is_used_rotated_and_ended_on_the_other(hosts):
    address = hosts.register(hosts.a)
    pair = hosts.login(hosts.a, address).json()
    with hosts.client(hosts.a) as on_a, hosts.client(hosts.b) as on_b:
        me = on_b.get("/api/users/me", headers=bearer(pair["access_token"]))
        assert me.status_code == 200 and me.json()["email"] == address

        rotated = on_b.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert rotated.status_code == 200, rotated.text
        renewed = rotated.json()
        assert renewed["refresh_token"] != pair["refresh_token"]
        assert on_a.get("/api/users/me", headers=bearer(renewed["access_token"])).json()["email"] == address

        # Host A's worker holds the token in its near cache: it answers it without asking a store.
        warm = [httpx.Client(base_url=hosts.a.base_url, timeout=10) for _ in range(4)]
        try:
            for _ in range(5):
                assert [c.get("/api/users/me", headers=bearer(renewed["access_token"])).status_code
                        for c in warm] == [200] * len(warm)
            assert on_b.post("/api/auth/logout", headers=bearer(renewed["access_token"])).status_code == 204
            took = refused_within(warm, "/api/users/me", bearer(renewed["access_token"]), 401,
                                  bound=PROPAGATION_BOUND)
        finally:
            for c in warm:
                c.close()
        assert took < PROPAGATION_BOUND
        # The rotated-away and the last refresh tokens are both dead on host A.
        for spent in (pair["refresh_token"], renewed["refresh_token"]):
            assert on_a.post("/api/auth/refresh", json={"refresh_token": spent}).status_code == 401


# -- (c) idempotency keys ------------------------------------------------------------------------


def test_a_payment_repeated_on_the_other_host_with_its_idempotency_key_gets_the_first_answer(hosts, provider_sim):
    provider_sim.control.reset()
    admin = hosts.token(hosts.a, role="admin")
    with hosts.client(hosts.a, admin) as http:
        plan = http.post("/api/plans", json={
            "code": f"hop-{uuid.uuid4().hex[:8]}", "name": "Hop monthly", "tier": "basic", "currency": "usd",
            "billing_period": "month", "price_minor": 999, "screens": 1, "max_height": 720,
        })
        assert plan.status_code == 201, plan.text
    token = hosts.token(hosts.a)
    body = {"plan_id": plan.json()["id"], "payment_method": "pm_card_visa"}
    idempotency = {"idempotency-key": str(uuid.uuid4())}
    charges_before = len(provider_sim.control.charges())
    provider_sim.control.behave(delay_ms=300)  # the two hosts' requests are in flight together

    def post(host: LiveServer, payment_method: str = "pm_card_visa") -> httpx.Response:
        with hosts.client(host, token) as http:
            return http.post("/api/subscriptions", json={**body, "payment_method": payment_method},
                             headers=idempotency)

    try:
        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(post, (hosts.a, hosts.b))
        assert first.status_code == second.status_code == 201, (first.text, second.text)
        assert first.json() == second.json()
        assert sorted([first.headers["idempotent-replayed"], second.headers["idempotent-replayed"]]) == [
            "false", "true"]
        for host in (hosts.a, hosts.b):  # later repeats replay the stored answer on either host
            repeated = post(host)
            assert repeated.status_code == 201 and repeated.json() == first.json()
            assert repeated.headers["idempotent-replayed"] == "true"
        other = post(hosts.b, "pm_card_mastercard")
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
        assert len(provider_sim.control.charges()) == charges_before + 1  # one charge for three answers
    finally:
        provider_sim.control.reset()
    with hosts.client(hosts.b, token) as http:
        assert [s["id"] for s in http.get("/api/subscriptions").json()["items"]] == [first.json()["id"]]


# -- (d) playback sessions -------------------------------------------------------------------------


def start(http: httpx.Client, movie_id: int, device: str) -> httpx.Response:
    return http.get(f"/api/movies/{movie_id}/playback", params={"device_id": device, "device_name": device})


def test_playback_sessions_opened_on_one_host_count_against_the_screen_limit_on_the_other(hosts):
    video = os.urandom(64 * 1024)
    movie = hosts.movie(video=video)
    token = hosts.token(hosts.a)
    with hosts.client(hosts.a, token) as on_a, hosts.client(hosts.b, token) as on_b:
        opened = [start(on_a, movie["id"], device) for device in ("phone", "tablet")]
        assert [r.status_code for r in opened] == [200] * SCREENS, [r.text for r in opened]
        phone = opened[0].json()

        refused = start(on_b, movie["id"], "laptop")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "too_many_streams"
        assert [s["device"] for s in refused.json()["error"]["details"]["active"]] == ["phone", "tablet"]
        listed = on_b.get("/api/playback/sessions").json()
        assert sorted(s["device"] for s in listed["items"]) == ["phone", "tablet"] and listed["limit"] == SCREENS
        beat = on_b.post(f"/api/playback/sessions/{phone['session']['id']}/heartbeat")
        assert beat.status_code == 200 and beat.json()["id"] == phone["session"]["id"]

        # A URL signed by host A streams from host B, out of the shared MEDIA_ROOT.
        url = phone["renditions"][-1]["url"]
        with httpx.Client(base_url=hosts.b.base_url, timeout=10) as anonymous_b:
            ranged = anonymous_b.get(url, headers={"range": "bytes=1000-4999"})
            assert ranged.status_code == 206 and ranged.content == video[1000:5000]
            assert ranged.headers["content-range"] == f"bytes 1000-4999/{len(video)}"

        # Ending the session on host B stops its URL on host A (whose worker cached it as live).
        streaming = [httpx.Client(base_url=hosts.a.base_url, timeout=10) for _ in range(3)]
        try:
            for _ in range(3):
                assert [c.get(url, headers={"range": "bytes=0-9"}).status_code for c in streaming] == [206] * 3
            assert on_b.delete(f"/api/playback/sessions/{phone['session']['id']}").status_code == 204
            refused_within(streaming, url, {"range": "bytes=0-9"}, 403, bound=PROPAGATION_BOUND)
        finally:
            for c in streaming:
                c.close()
        assert start(on_b, movie["id"], "laptop").status_code == 200
        assert start(on_a, movie["id"], "tv").status_code == 409


# -- (e) rate limits -----------------------------------------------------------------------------


def test_a_login_budget_spent_on_one_host_is_spent_on_the_other(hosts):
    victim = hosts.register(hosts.a)
    bystander = hosts.register(hosts.a)
    for attempt in range(LOGIN_BURST):
        guess = hosts.login(hosts.a, victim, password=f"wrong guess number {attempt}")
        assert guess.status_code == 401, guess.text
    refused = hosts.login(hosts.b, victim)  # even the right password, on a host that saw no guess
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["details"]["policy"] == "login_account"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert hosts.login(hosts.a, victim).status_code == 429
    assert hosts.login(hosts.b, bystander).status_code == 200  # another account's budget is whole
