"""Catalog test helpers: a live Granian server per storage profile with an editor and a viewer."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import (
    PROFILES,
    TEST_DB,
    LiveServer,
    fresh_database,
    profile_env,
    query_rows,
    require_profile,
    signed_in,
)
from vedina.config import load_settings


class Site:
    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.env = live.env
        self.settings = load_settings(live.env)
        self.anonymous = httpx.Client(base_url=live.base_url, timeout=20)
        self.editor = signed_in(live.base_url, live.env, role="editor")
        self.viewer = signed_in(live.base_url, live.env)

    def query(self, statement) -> list[dict]:
        return query_rows(self.settings, statement)

    def movie(self, **fields) -> tuple[int, int]:
        """Create a movie as the editor; returns (id, version)."""
        body = {"title": f"Movie {uuid.uuid4().hex[:8]}", **fields}
        created = self.editor.post("/api/movies", json=body)
        assert created.status_code == 201, created.text
        return created.json()["id"], created.json()["version"]

    def published(self, **fields) -> int:
        movie_id, version = self.movie(**fields)
        published = self.editor.post(f"/api/movies/{movie_id}/publish", headers={"if-match": f'"{version}"'})
        assert published.status_code == 200, published.text
        return movie_id

    def close(self) -> None:
        for client in (self.anonymous, self.editor, self.viewer):
            client.close()


@pytest.fixture(scope="module", params=PROFILES)
def site(request, tmp_path_factory):
    """One server per profile for a test module, on a fresh database."""
    require_profile(request.param)
    data_dir = tmp_path_factory.mktemp(f"catalog-{request.param}")
    env = profile_env(request.param, data_dir, database=TEST_DB, redis_db=3, amqp_prefix=f"cat-{uuid.uuid4().hex[:6]}")
    fresh_database(request.param, env)
    live = LiveServer(server="granian", env=env)
    built = Site(live)
    yield built
    built.close()
    live.stop()
