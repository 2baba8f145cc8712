"""Blog test helpers: a live Granian server per storage profile on a fresh database, with an
anonymous reader, a viewer, a moderator, an editor and an admin; in-process services on the same
database for what a test drives itself (the scheduler's clock)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import (
    PROFILES,
    TEST_DB,
    TEST_REDIS_DB,
    LiveServer,
    fresh_database,
    profile_env,
    query_rows,
    require_profile,
    signed_in,
)
from vedina.composition import open_services
from vedina.config import load_settings
from vedina.storage.schema import blog_posts, blog_revisions

BASE_URL = "https://vedina.example"


class BlogSite:
    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.env = live.env
        self.settings = load_settings(live.env)
        self.anonymous = httpx.Client(base_url=live.base_url, timeout=20)
        self.viewer = signed_in(live.base_url, live.env)
        self.moderator = signed_in(live.base_url, live.env, role="moderator")
        self.editor = signed_in(live.base_url, live.env, role="editor")
        self.admin = signed_in(live.base_url, live.env, role="admin")

    def query(self, statement) -> list[dict]:
        return query_rows(self.settings, statement)

    def execute(self, statement) -> None:
        """One write on the site's database, committed."""
        from vedina.storage.database import create_engine

        async def run() -> None:
            engine = create_engine(self.settings)
            try:
                async with engine.begin() as conn:
                    await conn.execute(statement)
            finally:
                await engine.dispose()

        asyncio.run(run())

    def in_process(self, call, **changes):
        """``await call(services)`` on in-process services of the same database (and host)."""
        import msgspec

        async def run():
            services = await open_services(msgspec.structs.replace(self.settings, **changes))
            try:
                return await call(services)
            finally:
                await services.close()

        return asyncio.run(run())

    def counts(self) -> tuple[int, int]:
        """(posts, revisions): what a refused request must leave as it was."""
        posts = self.query(sa.select(sa.func.count().label("n")).select_from(blog_posts))[0]["n"]
        revisions = self.query(sa.select(sa.func.count().label("n")).select_from(blog_revisions))[0]["n"]
        return posts, revisions

    def draft(self, **fields) -> dict:
        """A new post, as the editor sees it."""
        body = {"title": f"Post {uuid.uuid4().hex[:8]}", "body": "Hello *world*", **fields}
        created = self.editor.post("/api/blog/posts", json=body)
        assert created.status_code == 201, created.text
        return created.json()

    def published(self, **fields) -> dict:
        post = self.draft(**fields)
        answer = self.editor.post(f"/api/blog/posts/{post['id']}/publish", headers={"if-match": f'"{post["version"]}"'})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def movie(self, *, publish: bool, **fields) -> dict:
        """A movie made by the editor (the editor role may write the catalog too)."""
        created = self.editor.post("/api/movies", json={"title": f"Film {uuid.uuid4().hex[:8]}", **fields})
        assert created.status_code == 201, created.text
        movie_id = created.json()["id"]
        if publish:
            assert self.editor.post(f"/api/movies/{movie_id}/publish").status_code == 200
        return self.editor.get(f"/api/movies/{movie_id}").json()

    def close(self) -> None:
        for client in (self.anonymous, self.viewer, self.moderator, self.editor, self.admin):
            client.close()


@pytest.fixture(scope="module", params=PROFILES)
def site(request, tmp_path_factory):
    """One server per profile for a test module, on a fresh database (this checkout's test database)."""
    require_profile(request.param)
    data_dir = tmp_path_factory.mktemp(f"blog-{request.param}")
    env = profile_env(request.param, data_dir, database=TEST_DB, redis_db=TEST_REDIS_DB,
                      amqp_prefix=f"blog-{uuid.uuid4().hex[:6]}")
    env["PUBLIC_BASE_URL"] = BASE_URL
    fresh_database(request.param, env)
    live = LiveServer(server="granian", env=env)
    built = BlogSite(live)
    yield built
    built.close()
    live.stop()


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]
