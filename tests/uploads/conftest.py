"""Upload test helpers: a Granian server per profile on a database of its own, accounts, and
raw tus requests.

The test process holds the host's outbox-relay lock for the server's DATA_DIR
and database, so the server never relays: a finished upload's ``media.probe``
job stays in the outbox, where the tests read it, and its asset stays
``pending`` (what the probe then does is the media jobs' business).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import TEST_DB, TEST_REDIS_DB, LiveServer, profile_env, require_profile, reset_database, run_cli
from vedina.config import load_settings
from vedina.storage.clock import utcnow
from vedina.storage.database import create_engine
from vedina.storage.host_files import host_file
from vedina.storage.movies import MovieRepository
from vedina.storage.outbox import HostLock

PASSWORD = "correct horse battery staple"
TUS = {"tus-resumable": "1.0.0"}
CHUNK_LIMIT = 2 * 1024 * 1024  # above MAX_BODY_BYTES (1 MiB): the upload route has its own limit
MAX_UPLOAD = 64 * 1024 * 1024


def metadata_header(**pairs: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items())


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


class UploadServer:
    """A live server plus what the tests need around it: accounts, movies, database reads."""

    def __init__(self, profile: str, data_dir: Path) -> None:
        self.profile = profile
        self.env = {
            **profile_env(profile, data_dir, database=TEST_DB, redis_db=TEST_REDIS_DB,
                          amqp_prefix=f"vu-{uuid.uuid4().hex[:8]}"),
            "RATE_LIMIT_ENABLED": "false",
            "UPLOAD_CHUNK_MAX_BYTES": str(CHUNK_LIMIT),
            "UPLOAD_MAX_BYTES": str(MAX_UPLOAD),
        }
        self.settings = load_settings(self.env)
        self.media_root = self.settings.media_dir
        if profile == "real":
            asyncio.run(reset_database(self.settings))
        else:
            run_cli(self.env, "migrate")
        self.relay_lock = HostLock(host_file(self.settings, "relay"))
        assert self.relay_lock.try_acquire()
        self.movie_ids = [self._insert_movie(f"upload-target-{n}") for n in (1, 2)]
        self.live = self.start()
        self.editor = self.account("editor")
        self.other_editor = self.account("editor")
        self.viewer = self.account(None)

    def start(self) -> LiveServer:
        self.live = LiveServer(server="granian", env=self.env, workers=2)
        return self.live

    @property
    def base_url(self) -> str:
        return self.live.base_url

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, timeout=30, headers=headers)

    def account(self, role: str | None) -> str:
        """A new account's access token (``role`` given with ``vedina set-role``)."""
        address = f"uploader-{uuid.uuid4().hex[:12]}@example.org"
        with self.client() as http:
            assert http.post("/api/auth/register", json={"email": address, "password": PASSWORD,
                                                          "display_name": "Uploader"}).status_code == 202
            if role:
                run_cli(self.env, "set-role", address, role)
            response = http.post("/api/auth/login", json={"email": address, "password": PASSWORD})
            assert response.status_code == 200, response.text
            return response.json()["access_token"]

    def stop(self) -> None:
        self.live.stop()
        self.relay_lock.release()

    # -- the database, read directly ---------------------------------------------------

    def run(self, work):
        async def go():
            engine = create_engine(self.settings)
            try:
                async with engine.begin() as conn:
                    return await work(conn)
            finally:
                await engine.dispose()

        return asyncio.run(go())

    def query(self, statement) -> list[dict]:
        async def work(conn):
            return [dict(r) for r in (await conn.execute(statement)).mappings().all()]

        return self.run(work)

    def execute(self, statement) -> None:
        async def work(conn):
            await conn.execute(statement)

        self.run(work)

    def _insert_movie(self, slug: str) -> int:
        async def work(conn):
            return await MovieRepository.insert(
                conn, slug=slug, title=slug.title(), sort_title=slug, genres=[], spoken_languages=["en"],
                subtitle_languages=[], status="published", published_at=utcnow(),
            )

        return self.run(work)


@pytest.fixture(scope="module")
def upload_servers(tmp_path_factory):
    running: dict[str, UploadServer] = {}

    def get(profile: str) -> UploadServer:
        require_profile(profile)
        if profile not in running:
            running[profile] = UploadServer(profile, tmp_path_factory.mktemp(f"uploads-{profile}"))
        return running[profile]

    yield get
    for server in running.values():
        server.stop()


def count(server: UploadServer, table, *conditions) -> int:
    return server.query(sa.select(sa.func.count().label("n")).select_from(table).where(*conditions))[0]["n"]
