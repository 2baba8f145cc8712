"""tus 1.0.0 under /api/uploads against a live Granian server, on both profiles."""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import PROFILES
from tests.uploads.conftest import CHUNK_LIMIT, MAX_UPLOAD, TUS, UploadServer, checksum, count, metadata_header
from vedina.storage.schema import media_assets, outbox, uploads

pytestmark = pytest.mark.slow


@pytest.fixture(params=PROFILES)
def server(request, upload_servers) -> UploadServer:
    return upload_servers(request.param)


def create(server: UploadServer, token: str, length: int, **metadata: str):
    metadata = {"movie_id": str(server.movie_ids[0]), "filename": "feature.mp4", **metadata}
    with server.client(token) as http:
        return http.post("/api/uploads", headers={**TUS, "upload-length": str(length),
                                                  "upload-metadata": metadata_header(**metadata)})


def new_upload(server: UploadServer, length: int, token: str | None = None, **metadata: str) -> str:
    response = create(server, token or server.editor, length, **metadata)
    assert response.status_code == 201, response.text
    return response.headers["location"]


def patch(server: UploadServer, url: str, data: bytes, offset: int, token: str | None = None, **headers: str):
    with server.client(token or server.editor) as http:
        return http.patch(url, content=data, headers={
            **TUS, "content-type": "application/offset+octet-stream", "upload-offset": str(offset), **headers,
        })


def head(server: UploadServer, url: str, token: str | None = None):
    with server.client(token or server.editor) as http:
        return http.head(url, headers=TUS)


def upload_row(server: UploadServer, url: str) -> dict | None:
    rows = server.query(sa.select(uploads).where(uploads.c.id == url.rsplit("/", 1)[-1]))
    return rows[0] if rows else None


def part_file(server: UploadServer, url: str) -> Path:
    return server.media_root / "uploads" / f"{url.rsplit('/', 1)[-1]}.part"


# -- discovery and the version header --------------------------------------------------------


def test_options_advertises_version_extensions_limits_and_checksums(server):
    with server.client() as http:
        response = http.options("/api/uploads")
    assert response.status_code == 204
    assert response.headers["tus-resumable"] == "1.0.0"
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-extension"] == "creation,termination,checksum"
    assert response.headers["tus-max-size"] == str(MAX_UPLOAD)
    assert response.headers["tus-checksum-algorithm"] == "sha1,sha256,md5"


def test_requests_without_tus_resumable_1_0_0_are_412_with_tus_version(server):
    url = new_upload(server, 10)
    with server.client(server.editor) as http:
        for headers in ({}, {"tus-resumable": "0.2.2"}):
            response = http.head(url, headers=headers)
            assert response.status_code == 412
            assert response.headers["tus-version"] == "1.0.0"
            assert response.headers["tus-resumable"] == "1.0.0"
            response = http.patch(url, content=b"abc", headers={
                **headers, "content-type": "application/offset+octet-stream", "upload-offset": "0"})
            assert response.status_code == 412
            assert response.json()["error"]["details"]["field"] == "Tus-Resumable"
    assert upload_row(server, url)["offset_bytes"] == 0


# -- the whole flow -----------------------------------------------------------------------------


def test_upload_in_chunks_makes_one_pending_asset_and_enqueues_its_probe(server):
    data = os.urandom(CHUNK_LIMIT + 700_000)
    response = create(server, server.editor, len(data), filename="My Feature.MP4", language="en",
                      filetype="video/mp4")
    assert response.status_code == 201
    assert response.headers["tus-resumable"] == "1.0.0"
    assert "GMT" in response.headers["upload-expires"]
    url = response.headers["location"]
    assert url.startswith("/api/uploads/") and len(url.rsplit("/", 1)[-1]) == 32
    assert part_file(server, url).stat().st_size == 0

    offset = 0
    # The first chunk is larger than MAX_BODY_BYTES (1 MiB): the upload route's own limit applies.
    for size, algorithm in ((1_500_000, "sha256"), (1_000_000, "sha1"), (None, "md5")):
        chunk = data[offset:offset + size] if size else data[offset:]
        response = patch(server, url, chunk, offset, **{"upload-checksum": checksum(algorithm, chunk)})
        assert response.status_code == 204, response.text
        assert response.headers["tus-resumable"] == "1.0.0"
        offset += len(chunk)
        assert response.headers["upload-offset"] == str(offset)

    response = head(server, url)
    assert response.status_code == 200
    assert response.headers["upload-offset"] == response.headers["upload-length"] == str(len(data))
    assert response.headers["cache-control"] == "no-store"

    row = upload_row(server, url)
    assert row["completed_at"] is not None and row["offset_bytes"] == len(data)
    asset = server.query(sa.select(media_assets).where(media_assets.c.id == row["asset_id"]))[0]
    assert asset["status"] == "pending" and asset["kind"] == "video" and asset["movie_id"] == server.movie_ids[0]
    assert asset["path"] == f"uploads/movies/{server.movie_ids[0]}/{row['id']}.mp4"
    assert asset["content_type"] == "video/mp4" and asset["size_bytes"] == len(data)
    assert asset["label"] == "My Feature.MP4" and asset["language"] == "en"
    assert (server.media_root / asset["path"]).read_bytes() == data
    assert not part_file(server, url).exists()
    jobs = server.query(sa.select(outbox.c.payload).where(outbox.c.topic == "media.probe"))
    assert {"asset_id": row["asset_id"]} in [job["payload"] for job in jobs]


def test_a_subtitle_upload_is_a_subtitle_asset(server):
    data = b"WEBVTT\n\n00:00.000 --> 00:01.000\nHello\n"
    url = new_upload(server, len(data), filename="film.en.vtt", kind="subtitle", language="en")
    assert patch(server, url, data, 0).status_code == 204
    asset = server.query(sa.select(media_assets).where(media_assets.c.id == upload_row(server, url)["asset_id"]))[0]
    assert (asset["kind"], asset["content_type"], asset["path"].rsplit(".", 1)[-1]) == ("subtitle", "text/vtt", "vtt")


def test_a_retried_final_patch_is_409_and_makes_no_second_asset(server):
    data = os.urandom(300_000)
    url = new_upload(server, len(data))
    assert patch(server, url, data[:100_000], 0).status_code == 204
    assert patch(server, url, data[100_000:], 100_000).status_code == 204
    assets_before = count(server, media_assets)
    retried = patch(server, url, data[100_000:], 100_000)
    assert retried.status_code == 409
    assert retried.json()["error"]["details"]["offset"] == len(data)
    assert count(server, media_assets) == assets_before


# -- refusals -----------------------------------------------------------------------------------


def test_a_patch_at_another_offset_is_409_and_writes_nothing(server):
    url = new_upload(server, 1000)
    assert patch(server, url, b"a" * 100, 0).status_code == 204
    for offset in (0, 50, 200):
        response = patch(server, url, b"b" * 100, offset)
        assert response.status_code == 409
        assert response.headers["tus-resumable"] == "1.0.0"
        assert response.json()["error"]["details"] == {"field": "Upload-Offset", "offset": 100}
    assert upload_row(server, url)["offset_bytes"] == 100
    assert part_file(server, url).read_bytes() == b"a" * 100


def test_a_patch_without_the_offset_content_type_is_415(server):
    url = new_upload(server, 100)
    for content_type in ("application/octet-stream", "application/json", None):
        headers = {**TUS, "upload-offset": "0"}
        if content_type:
            headers["content-type"] = content_type
        with server.client(server.editor) as http:
            response = http.patch(url, content=b"x" * 10, headers=headers)
        assert response.status_code == 415
        assert response.headers["tus-resumable"] == "1.0.0"
    assert upload_row(server, url)["offset_bytes"] == 0


def test_a_missing_or_malformed_upload_offset_is_400(server):
    url = new_upload(server, 100)
    with server.client(server.editor) as http:
        for offset in (None, "-1", "ten", "1e3"):
            headers = {**TUS, "content-type": "application/offset+octet-stream"}
            if offset is not None:
                headers["upload-offset"] = offset
            response = http.patch(url, content=b"x", headers=headers)
            assert response.status_code == 400
            assert response.json()["error"]["details"]["field"] == "upload-offset"


def test_a_checksum_mismatch_is_460_and_keeps_the_offset(server):
    url = new_upload(server, 1000)
    assert patch(server, url, b"a" * 100, 0).status_code == 204
    response = patch(server, url, b"b" * 100, 100, **{"upload-checksum": checksum("sha1", b"c" * 100)})
    assert response.status_code == 460
    assert response.headers["tus-resumable"] == "1.0.0"
    assert response.json()["error"]["code"] == "checksum_mismatch"
    assert head(server, url).headers["upload-offset"] == "100"
    assert part_file(server, url).read_bytes() == b"a" * 100
    # The same chunk with its right digest goes through.
    good = patch(server, url, b"b" * 100, 100, **{"upload-checksum": checksum("sha1", b"b" * 100)})
    assert good.status_code == 204 and good.headers["upload-offset"] == "200"


def test_an_unsupported_or_malformed_checksum_is_400(server):
    url = new_upload(server, 100)
    for value in ("crc32 AAAAAA==", "sha1 not-base64!", "sha256 " + checksum("sha1", b"x").split()[1], "sha1"):
        response = patch(server, url, b"x", 0, **{"upload-checksum": value})
        assert response.status_code == 400, value
        assert response.json()["error"]["details"]["field"] == "Upload-Checksum"
    assert upload_row(server, url)["offset_bytes"] == 0


def test_a_chunk_over_the_chunk_limit_is_413(server):
    url = new_upload(server, CHUNK_LIMIT * 2)
    response = patch(server, url, b"x" * (CHUNK_LIMIT + 1), 0)
    assert response.status_code == 413
    assert response.json()["error"]["details"]["limit"] == CHUNK_LIMIT
    assert upload_row(server, url)["offset_bytes"] == 0
    # Other routes keep MAX_BODY_BYTES.
    with server.client(server.editor) as http:
        assert http.post("/api/uploads", content=b"x" * 1_500_000, headers=TUS).status_code == 413


def test_a_chunk_running_past_upload_length_is_refused(server):
    url = new_upload(server, 100)
    response = patch(server, url, b"x" * 101, 0)
    assert response.status_code == 413
    assert response.json()["error"]["details"] == {"field": "body", "remaining": 100}
    assert upload_row(server, url)["offset_bytes"] == 0 and part_file(server, url).stat().st_size == 0


def test_another_users_upload_is_404(server):
    url = new_upload(server, 100)
    assert head(server, url, server.other_editor).status_code == 404
    assert patch(server, url, b"x" * 10, 0, server.other_editor).status_code == 404
    with server.client(server.other_editor) as http:
        assert http.delete(url, headers=TUS).status_code == 404
    assert upload_row(server, url)["offset_bytes"] == 0
    assert head(server, url).status_code == 200


def test_unknown_and_malformed_upload_ids_are_404(server):
    for url in ("/api/uploads/" + "0" * 32, "/api/uploads/nothex", "/api/uploads/" + "A" * 32):
        assert head(server, url).status_code == 404
        assert patch(server, url, b"x", 0).status_code == 404


def test_a_viewer_may_not_upload_and_anonymous_callers_are_401(server):
    response = create(server, server.viewer, 100)
    assert response.status_code == 403
    assert response.headers["tus-resumable"] == "1.0.0"
    with server.client() as http:
        response = http.post("/api/uploads", headers={**TUS, "upload-length": "10"})
    assert response.status_code == 401


def test_bad_creation_requests_name_the_field_and_write_nothing(server):
    rows, files = count(server, uploads), set((server.media_root / "uploads").glob("*.part"))
    movie = str(server.movie_ids[0])
    cases = [
        ({"upload-metadata": metadata_header(filename="a.mp4")}, 422, "movie_id"),
        ({"upload-metadata": metadata_header(movie_id="999999", filename="a.mp4")}, 422, "movie_id"),
        ({"upload-metadata": metadata_header(movie_id="one", filename="a.mp4")}, 422, "movie_id"),
        ({"upload-metadata": metadata_header(movie_id=movie)}, 422, "filename"),
        ({"upload-metadata": f"movie_id {metadata_header(x=movie).split()[1]},filename %%%"}, 400, "filename"),
        ({"upload-metadata": "movie_id MQ==,movie_id Mg=="}, 400, "Upload-Metadata"),
        ({"upload-metadata": metadata_header(movie_id=movie, filename="a.exe")}, 422, "filename"),
        ({"upload-metadata": metadata_header(movie_id=movie, filename="a.mp4", kind="poster")}, 422, "kind"),
        ({"upload-metadata": metadata_header(movie_id=movie, filename="a.mp4", kind="subtitle")}, 422, "filename"),
        ({"upload-metadata": metadata_header(movie_id=movie, filename="a.mp4", language="english!")}, 422,
         "language"),
        ({"upload-metadata": metadata_header(movie_id=movie, filename="a\x00.mp4")}, 422, "filename"),
        ({"upload-length": None}, 400, "upload-length"),
        ({"upload-length": "-5"}, 400, "upload-length"),
        ({"upload-length": "0"}, 422, "Upload-Length"),
        ({"upload-length": str(MAX_UPLOAD + 1)}, 413, "Upload-Length"),
        ({"upload-defer-length": "1", "upload-length": None}, 400, "Upload-Defer-Length"),
    ]
    with server.client(server.editor) as http:
        for overrides, status, field in cases:
            headers = {**TUS, "upload-length": "100", "upload-metadata": metadata_header(movie_id=movie, filename="a.mp4")}
            headers.update(overrides)
            headers = {name: value for name, value in headers.items() if value is not None}
            response = http.post("/api/uploads", headers=headers)
            assert response.status_code == status, (overrides, response.text)
            assert response.json()["error"]["details"]["field"] == field, overrides
            assert response.headers["tus-resumable"] == "1.0.0"
    assert count(server, uploads) == rows
    assert set((server.media_root / "uploads").glob("*.part")) == files


def test_a_filename_with_a_path_cannot_leave_media_root(server):
    for filename, label in (("../../../../etc/cron.d/evil.mp4", "evil.mp4"), ("/etc/passwd.mkv", "passwd.mkv"),
                            ("..\\..\\windows\\x.webm", "x.webm")):
        data = os.urandom(1000)
        url = new_upload(server, len(data), filename=filename)
        assert patch(server, url, data, 0).status_code == 204
        row = upload_row(server, url)
        asset = server.query(sa.select(media_assets).where(media_assets.c.id == row["asset_id"]))[0]
        extension = label.rsplit(".", 1)[1]
        assert asset["path"] == f"uploads/movies/{server.movie_ids[0]}/{row['id']}.{extension}"
        assert asset["label"] == label
        assert (server.media_root / asset["path"]).resolve().is_relative_to(server.media_root)
        assert (server.media_root / asset["path"]).read_bytes() == data
    assert not Path("/etc/cron.d/evil.mp4").exists()


def test_terminating_removes_the_row_and_the_bytes(server):
    url = new_upload(server, 1000)
    assert patch(server, url, b"x" * 10, 0).status_code == 204
    with server.client(server.editor) as http:
        response = http.delete(url, headers=TUS)
        assert response.status_code == 204 and response.headers["tus-resumable"] == "1.0.0"
        assert http.delete(url, headers=TUS).status_code == 404
    assert upload_row(server, url) is None and not part_file(server, url).exists()
    assert head(server, url).status_code == 404
    assert patch(server, url, b"x", 10).status_code == 404


def test_an_expired_upload_is_404(server):
    url = new_upload(server, 100)
    server.execute(sa.update(uploads).where(uploads.c.id == url.rsplit("/", 1)[-1])
                   .values(expires_at=datetime(2000, 1, 1)))
    assert head(server, url).status_code == 404
    assert patch(server, url, b"x", 0).status_code == 404


# -- crash safety and concurrency ----------------------------------------------------------------


def test_bytes_a_crashed_writer_left_past_the_offset_are_dropped(server):
    data = os.urandom(5000)
    url = new_upload(server, len(data))
    assert patch(server, url, data[:1000], 0).status_code == 204
    with open(part_file(server, url), "ab") as part:  # written, but the offset never moved
        part.write(b"junk" * 300)
    response = head(server, url)
    assert response.headers["upload-offset"] == "1000"
    assert part_file(server, url).stat().st_size == 1000
    with open(part_file(server, url), "ab") as part:
        part.write(b"more junk")
    assert patch(server, url, data[1000:], 1000).status_code == 204  # truncates before it appends
    row = upload_row(server, url)
    asset = server.query(sa.select(media_assets.c.path).where(media_assets.c.id == row["asset_id"]))[0]
    assert hashlib.sha256((server.media_root / asset["path"]).read_bytes()).digest() == hashlib.sha256(data).digest()


def test_of_two_concurrent_patches_at_one_offset_exactly_one_wins(server):
    for _ in range(3):
        url = new_upload(server, 2 * CHUNK_LIMIT)
        chunks = [bytes([n]) * CHUNK_LIMIT for n in (1, 2)]
        statuses: list[int] = []
        barrier = threading.Barrier(2)

        def send(chunk: bytes) -> None:
            barrier.wait()
            statuses.append(patch(server, url, chunk, 0).status_code)

        threads = [threading.Thread(target=send, args=(chunk,)) for chunk in chunks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [204, 409]
        assert upload_row(server, url)["offset_bytes"] == CHUNK_LIMIT
        assert part_file(server, url).read_bytes() in chunks


@pytest.mark.parametrize("credentials", [None, "Bearer not-a-token", "viewer"])
def test_a_large_chunk_from_an_unknown_or_unentitled_caller_is_refused_before_its_body_is_read(server, credentials):
    """No one gets a worker to hold a large body before they are known: the refusal comes while the
    client has sent only the headers (a body it never sends would otherwise keep the request open)."""
    import socket

    authorization = f"Bearer {server.viewer}" if credentials == "viewer" else credentials
    head = (f"PATCH /api/uploads/{'a' * 32} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
            f"Content-Length: {CHUNK_LIMIT}\r\n" + (f"Authorization: {authorization}\r\n" if authorization else "") + "\r\n")
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(4096).decode("latin-1")
    status = int(answer.split(" ", 2)[1])
    assert status == (403 if credentials == "viewer" else 401), answer
