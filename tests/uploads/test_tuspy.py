"""A real tus client (tuspy) uploads through a server that is killed mid-way, and resumes on a new one."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import threading

import pytest
import sqlalchemy as sa
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError, TusUploadFailed

from tests.conftest import PROFILES
from tests.uploads.conftest import UploadServer
from vedina.storage.schema import media_assets, uploads

pytestmark = pytest.mark.slow

CHUNK = 256 * 1024
SIZE = 5 * 1024 * 1024 + 12345
KILL_AT = 2 * 1024 * 1024


class KillingStream(io.BytesIO):
    """The source file; when the client reads the chunk at KILL_AT, the server is SIGKILLed first."""

    def __init__(self, data: bytes, kill) -> None:
        super().__init__(data)
        self._kill = kill

    def read(self, size=-1):
        if self._kill is not None and self.tell() >= KILL_AT:
            self._kill()
            self._kill = None
        return super().read(size)


@pytest.fixture(params=PROFILES)
def server(request, upload_servers) -> UploadServer:
    return upload_servers(request.param)


def test_tuspy_resumes_after_the_server_is_killed_and_the_file_arrives_whole(server):
    data = os.urandom(SIZE)
    metadata = {"movie_id": str(server.movie_ids[1]), "filename": "resumed.mkv"}
    killed = threading.Event()

    def kill() -> None:
        os.killpg(server.live.process.pid, signal.SIGKILL)  # the whole process group: no clean shutdown
        server.live.process.wait()
        killed.set()

    client = TusClient(f"{server.base_url}/api/uploads", headers={"Authorization": f"Bearer {server.editor}"})
    uploader = client.uploader(file_stream=KillingStream(data, kill), chunk_size=CHUNK, metadata=metadata,
                               upload_checksum=True)
    with pytest.raises((TusCommunicationError, TusUploadFailed)):
        uploader.upload()
    assert killed.is_set()
    path = uploader.url.split("/api/uploads/", 1)[1]
    row = server.query(sa.select(uploads).where(uploads.c.id == path))[0]
    assert KILL_AT - CHUNK <= row["offset_bytes"] <= KILL_AT < SIZE
    assert row["completed_at"] is None

    server.start()  # a new server on the same DATA_DIR and database
    client = TusClient(f"{server.base_url}/api/uploads", headers={"Authorization": f"Bearer {server.editor}"})
    resumed = client.uploader(file_stream=io.BytesIO(data), url=f"{server.base_url}/api/uploads/{path}",
                              chunk_size=CHUNK, metadata=metadata, upload_checksum=True)
    assert resumed.offset == row["offset_bytes"]  # tuspy asked the new server (HEAD) where to go on
    resumed.upload()

    row = server.query(sa.select(uploads).where(uploads.c.id == path))[0]
    asset = server.query(sa.select(media_assets).where(media_assets.c.id == row["asset_id"]))[0]
    assert asset["path"] == f"uploads/movies/{server.movie_ids[1]}/{path}.mkv"
    assert hashlib.sha256((server.media_root / asset["path"]).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
