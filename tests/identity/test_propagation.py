"""Revocation reaches every worker (and every host) within the bound, although hot
requests ask no store: each worker answers a repeated token from its near cache.

Both profiles, a live 2-worker Granian server. Before each change, both workers
are shown to hold the token in their caches (their own metrics files count
principal-cache hits per process); after it, every worker refuses the token
within PROPAGATION_BOUND. Across hosts (real profile): two servers with their
own shared-memory tables, linked only by Redis.
"""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, require_profile
from tests.identity.conftest import IdentityServer, bearer
from vedina.storage.invalidation import PROPAGATION_BOUND

CONNECTIONS = 12  # kept open at once, so the kernel spreads them over both workers


def principal_hits_per_worker(server: IdentityServer) -> dict[str, float]:
    """pid -> principal-cache hits, read from each worker's own metrics file."""
    from prometheus_client.mmap_dict import MmapedDict

    hits = {}
    folder = Path(server.env["DATA_DIR"], f"metrics-{server.live.port}")
    for path in glob.glob(str(folder / "counter_*.db")):
        pid = Path(path).stem.split("_")[-1]
        total = 0.0
        for key, value, *_ in MmapedDict.read_all_values_from_file(path):
            if '"vedina_near_cache_total"' in key and '"principals"' in key and '"hit"' in key:
                total += value
        hits[pid] = total
    return hits


def statuses(clients: list[httpx.Client], token: str, path: str = "/api/users/me") -> list[int]:
    return [c.get(path, headers=bearer(token)).status_code for c in clients]


def open_clients(base_url: str) -> list[httpx.Client]:
    clients = [httpx.Client(base_url=base_url, timeout=10) for _ in range(CONNECTIONS)]
    import concurrent.futures

    # Connect them concurrently: a worker busy accepting one leaves the next to the other.
    with concurrent.futures.ThreadPoolExecutor(CONNECTIONS) as pool:
        list(pool.map(lambda c: c.get("/health"), clients))
    return clients


def warm(server: IdentityServer, clients: list[httpx.Client], token: str) -> None:
    """Every connection has answered the token, from the cache on both workers. Where the
    kernel gave every connection to one worker, more connections are opened (into ``clients``)."""
    before = principal_hits_per_worker(server)
    for _batch in range(4):
        for _ in range(3):
            assert statuses(clients, token) == [200] * len(clients)
        deadline = time.monotonic() + 3  # workers add their counts to the metrics files once a second
        while True:
            after = principal_hits_per_worker(server)
            warmed = [pid for pid, hits in after.items() if hits > before.get(pid, 0)]
            if len(warmed) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if len(warmed) >= 2:
            return
        clients.extend(open_clients(str(clients[0].base_url)))
    assert len(warmed) >= 2, f"only workers {warmed} answered from their caches: {after}"


def refused_within(clients: list[httpx.Client], token: str, expected: int, *, bound: float) -> float:
    started = time.monotonic()
    while True:
        answers = statuses(clients, token)
        if answers == [expected] * len(clients):
            return time.monotonic() - started
        assert time.monotonic() - started < bound, answers
        time.sleep(0.01)


@pytest.fixture
def clients(server):
    opened = open_clients(server.base_url)
    yield opened
    for c in opened:
        c.close()


def make_admin(server: IdentityServer, http: httpx.Client) -> str:
    address = server.register(http, name="Admin")
    server.set_role(address, "admin")  # another process (the CLI) writes: it publishes too
    return server.token(http, address)


@pytest.mark.parametrize(
    "change",
    ["logout", "logout_all", "suspend", "refresh_reuse", "delete_account"],
)
def test_a_change_on_one_worker_is_refused_on_every_worker_within_the_bound(server, clients, change):
    with server.client() as http:
        address = server.register(http)
        pair = server.login(http, address).json()
        token = pair["access_token"]
        other = server.login(http, address).json()  # a second session of the same user
        warm(server, clients, token)
        expected = 401
        if change == "logout":
            assert http.post("/api/auth/logout", headers=bearer(token)).status_code == 204
        elif change == "logout_all":
            assert http.post("/api/auth/logout-all", headers=bearer(other["access_token"])).status_code in (200, 204)
        elif change == "suspend":
            admin = make_admin(server, http)
            user_id = http.get("/api/users/me", headers=bearer(token)).json()["id"]
            assert http.post(f"/api/users/{user_id}/suspend", headers=bearer(admin)).status_code == 200
            expected = 403
        elif change == "refresh_reuse":
            assert http.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 200
            assert http.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
        elif change == "delete_account":
            assert http.request("DELETE", "/api/users/me", headers=bearer(other["access_token"])).status_code == 204
    # Same host: the change is in the shared table before the answer left, so no waiting at all.
    assert statuses(clients, token) == [expected] * len(clients)


def test_a_role_change_applies_on_every_worker(server, clients):
    with server.client() as http:
        address = server.register(http)
        token = server.token(http, address)
        warm(server, clients, token)
        assert statuses(clients, token, "/api/users?limit=1") == [403] * len(clients)
        server.set_role(address, "admin")  # the CLI, another process
        refused_within(clients, token, 200, bound=PROPAGATION_BOUND)
        admin = make_admin(server, http)
        user_id = http.get("/api/users/me", headers=bearer(token)).json()["id"]
        assert http.put(f"/api/users/{user_id}/role", json={"role": "viewer"}, headers=bearer(admin)).status_code == 200
    assert statuses(clients, token, "/api/users?limit=1") == [403] * len(clients)


def test_profile_changes_are_seen_by_every_worker(server, clients):
    with server.client() as http:
        token = server.token(http, server.register(http, name="Before"))
        for _ in range(3):
            assert {c.get("/api/users/me", headers=bearer(token)).json()["display_name"] for c in clients} == {"Before"}
        assert http.patch("/api/users/me", json={"display_name": "After"}, headers=bearer(token)).status_code == 200
    assert {c.get("/api/users/me", headers=bearer(token)).json()["display_name"] for c in clients} == {"After"}


# -- across hosts: two servers, their own shared-memory tables, one Redis -------------------------


@pytest.fixture(scope="module")
def second_host(identity_servers, tmp_path_factory):
    """The real profile's identity server, and a second one that shares only the database and Redis."""
    require_profile("real")
    first = identity_servers("real")
    data_dir = tmp_path_factory.mktemp("second-host")
    env = {**first.env, "DATA_DIR": str(data_dir), "MEDIA_ROOT": str(Path(first.env["DATA_DIR"], "media")),
           "RATE_LIMIT_SHM_PATH": str(data_dir / "ratelimit.shm"),
           "INVALIDATION_SHM_PATH": str(data_dir / "generations.shm")}
    live = LiveServer(server="granian", env=env, workers=2)
    yield first, IdentityServer(live)
    live.stop()


@pytest.mark.parametrize("change", ["logout", "suspend"])
def test_a_change_on_one_host_is_refused_on_the_other_within_the_bound(second_host, change):
    first, second = second_host
    assert os.path.realpath(first.env["INVALIDATION_SHM_PATH"]) != os.path.realpath(second.env["INVALIDATION_SHM_PATH"])
    there = open_clients(second.base_url)
    try:
        with first.client() as http:
            address = first.register(http)
            token = first.token(http, address)
            warm(second, there, token)
            if change == "logout":
                assert http.post("/api/auth/logout", headers=bearer(token)).status_code == 204
                expected = 401
            else:
                admin = make_admin(first, http)
                user_id = http.get("/api/users/me", headers=bearer(token)).json()["id"]
                assert http.post(f"/api/users/{user_id}/suspend", headers=bearer(admin)).status_code == 200
                expected = 403
        took = refused_within(there, token, expected, bound=PROPAGATION_BOUND)
        assert took < PROPAGATION_BOUND
    finally:
        for c in there:
            c.close()


