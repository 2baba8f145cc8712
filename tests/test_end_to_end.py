"""Issue 9, end to end on both profiles: from an editor's interrupted upload to a viewer's stream.

An editor creates a movie, uploads a clip with a real tus client (tuspy) that stops half-way
and resumes; the media.probe and media.transcode jobs run (in the server on the embedded
profile, in `vedina worker` through RabbitMQ on the real one); the editor publishes. A viewer
finds the movie by a misspelled search, gets a playback URL, streams ranges of a rendition and
has ffprobe read it over HTTP, saves progress and sees it in "continue watching". A profile with
a lower age limit cannot see the movie, and a third device is refused with 409.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
import uuid

import httpx
import pytest
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from tests.conftest import (
    PROFILES,
    TEST_DB,
    VEDINA,
    LiveServer,
    fresh_database,
    profile_env,
    require_profile,
    signed_in,
)
from tests.jobs.media_helpers import make_clip

pytestmark = pytest.mark.slow

CHUNK = 64 * 1024


class StopsHalfway(io.BytesIO):
    """A source the client stops reading half-way (a dropped connection, a closed laptop)."""

    def read(self, size=-1):
        if self.tell() >= len(self.getbuffer()) // 2:
            raise ConnectionError("client went away")
        return super().read(size)


@pytest.fixture(params=PROFILES)
def deployment(request, tmp_path):
    require_profile(request.param)
    env = {
        **profile_env(request.param, tmp_path, database=TEST_DB, redis_db=4, amqp_prefix=f"e2e-{uuid.uuid4().hex[:6]}"),
        "RATE_LIMIT_ENABLED": "false", "TRANSCODE_PRESET": "ultrafast", "MAX_CONCURRENT_STREAMS": "2",
    }
    worker = None
    fresh_database(request.param, env)
    if request.param == "real":
        worker = subprocess.Popen([VEDINA, "worker"], env={**os.environ, **env}, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "wb"))
    live = LiveServer(server="granian", env=env, workers=2)
    yield live, env, tmp_path
    live.stop()
    if worker is not None:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=20)


def test_from_an_interrupted_upload_to_a_stream_on_a_third_device(deployment):
    live, env, tmp_path = deployment
    editor = signed_in(live.base_url, env, role="editor")

    # -- the editor makes the movie and uploads its clip, interrupted and resumed ---------------
    person = editor.post("/api/people", json={"name": "Keanu Reeves"}).json()["id"]
    created = editor.post("/api/movies", json={
        "title": "The Matrix", "synopsis": "A hacker learns the truth about his world.", "release_year": 1999,
        "maturity_rating": "R", "cast": [{"person_id": person, "role": "Neo"}], "spoken_languages": ["en"],
    })
    assert created.status_code == 201, created.text
    movie_id = created.json()["id"]
    clip = make_clip(tmp_path / "matrix.mp4", width=640, height=360, seconds=3)
    data = clip.read_bytes()
    metadata = {"movie_id": str(movie_id), "filename": "matrix.mp4"}
    tus = TusClient(f"{live.base_url}/api/uploads", headers={"Authorization": editor.headers["authorization"]})
    first = tus.uploader(file_stream=StopsHalfway(data), chunk_size=CHUNK, metadata=metadata, upload_checksum=True)
    with pytest.raises((ConnectionError, TusCommunicationError)):
        first.upload()
    assert 0 < first.offset < len(data)
    resumed = tus.uploader(file_stream=io.BytesIO(data), url=first.url, chunk_size=CHUNK, metadata=metadata,
                           upload_checksum=True)
    assert resumed.offset == first.offset, "the server told the client where to go on"
    resumed.upload()

    # -- media.probe and media.transcode run ----------------------------------------------------
    deadline = time.monotonic() + 120
    while True:
        assets = editor.get(f"/api/movies/{movie_id}").json()["assets"]
        source = next(a for a in assets if a["kind"] == "video")
        if source["status"] == "ready" and source["transcode_status"] == "done":
            break
        assert source["status"] != "failed" and source["transcode_status"] != "failed", source
        assert time.monotonic() < deadline, f"jobs did not finish: {source}"
        time.sleep(0.5)
    assert source["video_codec"] == "h264" and source["height"] == 360 and source["size_bytes"] == len(data)
    assert any(a["kind"] == "rendition" and a["status"] == "ready" for a in assets)

    # -- published, found by a misspelled search ----------------------------------------------
    etag = editor.get(f"/api/movies/{movie_id}").headers["etag"]
    assert editor.post(f"/api/movies/{movie_id}/publish", headers={"if-match": etag}).status_code == 200
    viewer = signed_in(live.base_url, env)
    found = viewer.get("/api/movies?q=matirx%20").json()
    assert [m["id"] for m in found["items"]] == [movie_id] and found["corrected_query"] == "matrix"

    # -- a playback URL, ranges of a rendition, ffprobe over HTTP --------------------------------
    playback = viewer.get(f"/api/movies/{movie_id}/playback", params={"device_id": "laptop", "device_name": "laptop"})
    assert playback.status_code == 200, playback.text
    rendition = next(r for r in playback.json()["renditions"] if r["kind"] == "rendition")
    for artwork in ("poster", "sprite", "sprite_image"):  # thumbnails: the cues' picture has its own URL
        assert httpx.get(live.base_url + playback.json()[artwork]["url"]).status_code == 200
    url = live.base_url + rendition["url"]
    ranged = httpx.get(url, headers={"range": "bytes=0-1023"})  # no credentials: the signed URL is enough
    assert ranged.status_code == 206 and len(ranged.content) == 1024
    assert ranged.headers["content-range"].startswith("bytes 0-1023/")
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", url],
                           capture_output=True, timeout=60, check=True)
    codecs = {s["codec_name"] for s in json.loads(probe.stdout)["streams"]}
    assert codecs == {"h264", "aac"}

    # -- progress, continue watching -------------------------------------------------------------
    saved = viewer.put(f"/api/movies/{movie_id}/progress", json={"position_seconds": 1, "duration_seconds": 3})
    assert saved.status_code == 200, saved.text
    watching = viewer.get("/api/users/me/continue-watching").json()["items"]
    assert [(w["movie_id"], w["position_seconds"]) for w in watching] == [(movie_id, 1)]

    # -- a profile with a lower age limit cannot see it ------------------------------------------
    kid = viewer.post("/api/profiles", json={"name": "Kid", "max_age_rating": "PG"}).json()["id"]
    as_kid = {"x-profile-id": str(kid)}
    assert viewer.get(f"/api/movies/{movie_id}", headers=as_kid).status_code == 404
    assert viewer.get("/api/movies?q=matrix", headers=as_kid).json()["items"] == []
    refused = viewer.get(f"/api/movies/{movie_id}/playback", params={"device_id": "kid-tablet", "device_name": "kid-tablet"}, headers=as_kid)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "age_restricted"

    # -- a third device is one too many ----------------------------------------------------------
    assert viewer.get(f"/api/movies/{movie_id}/playback", params={"device_id": "tv", "device_name": "tv"}).status_code == 200
    third = viewer.get(f"/api/movies/{movie_id}/playback", params={"device_id": "phone", "device_name": "phone"})
    assert third.status_code == 409 and third.json()["error"]["code"] == "too_many_streams"
    assert sorted(s["device"] for s in third.json()["error"]["details"]["active"]) == ["laptop", "tv"]
