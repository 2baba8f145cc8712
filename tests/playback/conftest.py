"""Playback test helpers: a live Granian server per profile (2 workers, short session timeout),
accounts, and movies inserted straight into the database (draft, premium, windowed, rated)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import PROFILES, LiveServer, require_profile, server_pool
from vedina.config import load_settings
from vedina.storage.clock import utcnow
from vedina.storage.database import create_engine
from vedina.storage.schema import media_assets, movies

PASSWORD = "correct horse battery staple"
TIMEOUT = 5  # PLAYBACK_SESSION_TIMEOUT_SECONDS of the test servers
PLAYBACK_ENV = {"RATE_LIMIT_ENABLED": "false", "PLAYBACK_SESSION_TIMEOUT_SECONDS": str(TIMEOUT),
                "MAX_CONCURRENT_STREAMS": "2"}


class PlaybackServer:
    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.env = live.env
        self.base_url = live.base_url
        self.settings = load_settings(live.env)

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, timeout=30, headers=headers, **kwargs)

    def user(self) -> str:
        """A new account's access token."""
        address = f"viewer-{uuid.uuid4().hex[:12]}@example.org"
        with self.client() as http:
            assert http.post("/api/auth/register", json={"email": address, "password": PASSWORD,
                                                         "display_name": "Viewer"}).status_code == 202
            response = http.post("/api/auth/login", json={"email": address, "password": PASSWORD})
            assert response.status_code == 200, response.text
            return response.json()["access_token"]

    def run(self, statement_or_fn):
        async def go():
            engine = create_engine(self.settings)
            try:
                async with engine.begin() as conn:
                    return await statement_or_fn(conn)
            finally:
                await engine.dispose()

        return asyncio.run(go())

    def demo_movie(self) -> dict:
        """The first demo movie's id, video and subtitle asset ids (read from the database)."""
        async def read(conn):
            movie_id = (await conn.execute(sa.select(sa.func.min(movies.c.id)).where(
                movies.c.slug == "color-bars"))).scalar_one()
            rows = (await conn.execute(sa.select(media_assets.c.id, media_assets.c.kind)
                                       .where(media_assets.c.movie_id == movie_id))).all()
            return {"id": movie_id, **{kind: asset_id for asset_id, kind in rows}}

        return self.run(read)

    def new_movie(self, **values) -> dict:
        """A new published movie (overridable: status, plan_tier, maturity_rating, window) with a copy
        of the demo clip's assets; new ids are in no cache."""
        async def insert(conn):
            now = utcnow()
            source = (await conn.execute(sa.select(media_assets).where(
                media_assets.c.movie_id == sa.select(movies.c.id).where(movies.c.slug == "color-bars")
                .scalar_subquery()))).mappings().all()
            row = {"slug": f"pb-{uuid.uuid4().hex[:10]}", "title": "Playback test", "original_title": "",
                   "sort_title": "playback test", "synopsis": "", "maturity_rating": "G", "genres": [],
                   "spoken_languages": [], "subtitle_languages": [], "plan_tier": "basic", "status": "published",
                   "published_at": now, "version": 1, "people_text": "", "popularity": 0, "rating_count": 0,
                   "rating_sum": 0, "rating_avg": 0, "created_at": now, "updated_at": now, **values}
            movie_id = (await conn.execute(sa.insert(movies).values(**row))).inserted_primary_key[0]
            ids = {"id": movie_id}
            for asset in source:
                copy = {k: v for k, v in asset.items() if k not in ("id", "movie_id", "parent_id")}
                asset_id = (await conn.execute(sa.insert(media_assets).values(movie_id=movie_id, **copy)))
                ids[asset["kind"]] = asset_id.inserted_primary_key[0]
            return ids

        return self.run(insert)

    def popularity(self, movie_id: int) -> int:
        async def read(conn):
            return (await conn.execute(sa.select(movies.c.popularity).where(movies.c.id == movie_id))).scalar_one()

        return self.run(read)


HOUR = timedelta(hours=1)


@pytest.fixture(scope="session")
def playback_servers(live_data):
    with server_pool(lambda profile: PlaybackServer(
        LiveServer(server="granian", env={**live_data(profile), **PLAYBACK_ENV})
    )) as get:
        yield get


@pytest.fixture(params=PROFILES)
def server(request, playback_servers) -> PlaybackServer:
    require_profile(request.param)
    return playback_servers(request.param)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
