"""/api/media/:asset_id — byte ranges checked against nginx, on both servers.

Every Range case is sent to the app (Granian bridge and Robyn's server) and to
an nginx serving the same file from disk; status, Content-Range and bytes must
agree. Where Vedina deliberately differs from nginx (invalid syntax, adjacent
ranges), a test states both answers. Real clients (ffprobe, ffmpeg, curl
resume) play the demo clips over HTTP, and X-Accel-Redirect mode runs behind a
real nginx rendered from nginx/vedina.conf.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest

from tests.conftest import SERVERS, SESSION_SECRET, LiveServer
from tests.http.nginx_helper import Nginx
from vedina.security.keys import derive_key
from vedina.security.playback_tokens import PlaybackTokens

pytestmark = pytest.mark.slow

PROFILE = "embedded"  # the asset lookup is the catalog's; both profiles are in test_contract
MOOV_LAST = "game-of-life"  # 1.5 MB, moov atom at the end
MOOV_FIRST = "color-bars"


# Streaming needs a signed URL (?t=): the tests sign one as GET /api/movies/:id/playback would,
# with the live servers' SESSION_SECRET (tests/playback covers how clients get them).
_TOKENS = PlaybackTokens(derive_key(SESSION_SECRET, "playback"), ttl=3600)


def signed(asset_id: int | str) -> str:
    """The URL path of an asset with a token (user 1, no playback session)."""
    return f"/api/media/{asset_id}?t={_TOKENS.issue(user_id=1, asset_id=int(asset_id))}"


def media_dir(live_data) -> Path:
    return Path(live_data(PROFILE)["DATA_DIR"]) / "media"


def assets_by_slug(base_url: str) -> dict[str, dict[str, int]]:
    """slug -> {"video": asset id, "subtitle": asset id}, read through the public API."""
    found = {}
    with httpx.Client(base_url=base_url, timeout=10) as http:
        for movie in http.get("/api/movies").json()["items"]:
            detail = http.get(f"/api/movies/{movie['id']}").json()
            found[movie["slug"]] = {a["kind"]: a["id"] for a in detail["assets"]}
    return found


@pytest.fixture(params=SERVERS)
def app(request, live_servers) -> LiveServer:
    return live_servers(request.param, PROFILE)


@pytest.fixture
def http(app):
    with httpx.Client(base_url=app.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def video(app) -> str:
    """URL path of the moov-last demo clip (the largest)."""
    return signed(assets_by_slug(app.base_url)[MOOV_LAST]["video"])


@pytest.fixture(scope="module")
def nginx(live_data, tmp_path_factory):
    with Nginx.static(tmp_path_factory.mktemp("nginx-static"), root=media_dir(live_data)) as server:
        yield server


@pytest.fixture
def original(live_data) -> bytes:
    return (media_dir(live_data) / "demo" / f"{MOOV_LAST}.mp4").read_bytes()


def reference(nginx: Nginx, range_header: str) -> httpx.Response:
    return httpx.get(f"{nginx.base_url}/demo/{MOOV_LAST}.mp4", headers={"range": range_header}, timeout=30)


_CONTENT_RANGE = re.compile(rb"Content-Range: bytes (\d+)-(\d+)/(\d+)\r\n")


def multipart_parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Range, bytes) of each part, checking nginx's exact layout."""
    match = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", response.headers["content-type"])
    assert match, response.headers["content-type"]
    delimiter = b"\r\n--" + match.group(1).encode()
    body, parts, at = response.content, [], 0
    while body.startswith(delimiter + b"\r\n", at):
        head_end = body.index(b"\r\n\r\n", at) + 4
        head = body[at:head_end]
        assert b"\r\nContent-Type: " in head
        start, end, _ = map(int, _CONTENT_RANGE.search(head).groups())
        parts.append((f"bytes {start}-{end}", body[head_end:head_end + end - start + 1]))
        at = head_end + end - start + 1
    assert body[at:] == delimiter + b"--\r\n", "bad multipart trailer"
    return parts


# -- Range answers equal nginx's ------------------------------------------------------

SIZE = "size"  # placeholder in the table, replaced by the file size
RANGE_CASES = [
    "bytes=0-99",  # single
    "bytes=1000-1999",
    "bytes=-500",  # suffix
    "bytes=1000-",  # open-ended
    "bytes=-99999999",  # suffix longer than the file: all of it
    "bytes=0-",
    "bytes=0-0",  # first byte
    "bytes=-1",  # last byte
    "bytes={last}-{last}",  # last byte, explicitly
    "bytes={last_but_9}-99999999",  # last-pos beyond the end: clamped
    "bytes=0-9,100-109",  # several non-overlapping
    "bytes=0-9,100-109,-5",
    "bytes=0-1,99999999-",  # one of two satisfiable: a single part
    "bytes={size}-",  # beyond the end: 416
    "bytes=99999999-",
    "bytes=-0",
    "bytes=0-,0-",  # adds up to more than the file: ignored, 200
    "items=0-1",  # unknown unit: ignored
    "bytes=",
]


def _fill(case: str, size: int) -> str:
    return case.format(size=size, last=size - 1, last_but_9=size - 10)


@pytest.mark.parametrize("case", RANGE_CASES)
def test_range_answer_equals_nginx(app, http, video, nginx, original, case):
    header = _fill(case, len(original))
    ours, ref = http.get(video, headers={"range": header}), reference(nginx, header)

    assert ours.status_code == ref.status_code, (header, ours.text[:200])
    assert ours.headers.get("content-range") == ref.headers.get("content-range")
    if ref.status_code == 206 and ref.headers["content-type"].startswith("multipart/"):
        assert multipart_parts(ours) == multipart_parts(ref)
        if app.server == "granian":  # Robyn's server streams chunked, dropping our length
            assert ours.headers["content-length"] == ref.headers["content-length"] == str(len(ours.content))
    elif ref.status_code in (200, 206):
        assert ours.content == ref.content
        assert ours.headers["content-length"] == str(len(ours.content))
        assert ours.headers["content-type"] == "video/mp4"
    else:
        assert ours.status_code == 416
        assert ours.headers["content-type"] == "application/json"
        assert ours.json()["error"]["code"] == "range_not_satisfiable"


@pytest.mark.parametrize("header", ["bytes=a-b", "bytes=5-4", "bytes=0-1;2-3", "bytes=--1"])
def test_invalid_range_syntax_is_ignored_where_nginx_refuses(http, video, nginx, original, header):
    # RFC 9110 §14.2 lets a server ignore or reject an invalid ranges-specifier;
    # we ignore it (a player still gets its video), nginx answers 416.
    ours = http.get(video, headers={"range": header})
    assert ours.status_code == 200 and ours.content == original
    assert "content-range" not in ours.headers
    assert reference(nginx, header).status_code == 416


def test_adjacent_and_overlapping_ranges_are_coalesced(http, video, nginx, original):
    # RFC 9110 §14.3 lets a server coalesce; nginx sends one part per range.
    ours = http.get(video, headers={"range": "bytes=0-9,10-19,15-29"})
    assert ours.status_code == 206
    assert ours.headers["content-range"] == f"bytes 0-29/{len(original)}"
    assert ours.content == original[:30]
    assert len(multipart_parts(reference(nginx, "bytes=0-9,10-19,15-29"))) == 3


def test_ranges_out_of_order_are_sent_sorted(http, video, nginx):
    # parse_range sorts while coalescing; nginx keeps the request's order
    # (RFC 9110 §14.6: SHOULD). Same parts, same bytes.
    ours = multipart_parts(http.get(video, headers={"range": "bytes=200-299,0-9"}))
    ref = multipart_parts(reference(nginx, "bytes=200-299,0-9"))
    assert [r for r, _ in ours] == ["bytes 0-9", "bytes 200-299"]
    assert ours == sorted(ref)


def test_too_many_ranges_are_ignored(http, video, original):
    header = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(17))
    ours = http.get(video, headers={"range": header})
    assert ours.status_code == 200 and ours.content == original


# -- headers, validators, conditionals ---------------------------------------------------


def test_full_file_with_validators_and_client_caching(http, video, original):
    response = http.get(video)
    assert response.status_code == 200 and response.content == original
    assert response.headers["accept-ranges"] == "bytes"
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"', response.headers["etag"])  # strong
    assert response.headers["last-modified"].endswith(" GMT")
    assert response.headers["cache-control"] == "private, max-age=3600"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "x-vedina-sendfile" not in response.headers


def test_content_type_by_extension(app, http):
    ids = assets_by_slug(app.base_url)[MOOV_FIRST]
    subtitle = http.get(signed(ids["subtitle"]))
    assert subtitle.status_code == 200
    assert subtitle.headers["content-type"] == "text/vtt"
    assert subtitle.content.startswith(b"WEBVTT")
    assert http.head(signed(ids["video"])).headers["content-type"] == "video/mp4"


def test_if_none_match_is_304_without_body(http, video):
    etag = http.get(video, headers={"range": "bytes=0-0"}).headers["etag"]
    for value in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        response = http.get(video, headers={"if-none-match": value, "range": "bytes=0-9"})
        assert response.status_code == 304, value
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "private, max-age=3600"
    assert http.get(video, headers={"if-none-match": '"other"'}).status_code == 200


def test_if_modified_since(http, video):
    last_modified = http.head(video).headers["last-modified"]
    assert http.get(video, headers={"if-modified-since": last_modified}).status_code == 304
    assert http.get(video, headers={"if-modified-since": formatdate(0, usegmt=True)}).status_code == 200
    assert http.get(video, headers={"if-modified-since": "not a date"}).status_code == 200
    # If-None-Match decides alone when both are sent.
    both = {"if-modified-since": last_modified, "if-none-match": '"other"'}
    assert http.get(video, headers=both).status_code == 200


def test_if_range_matching_validator_keeps_the_range(http, video, original):
    head = http.head(video).headers
    for validator in (head["etag"], head["last-modified"]):
        response = http.get(video, headers={"range": "bytes=10-19", "if-range": validator})
        assert response.status_code == 206, validator
        assert response.content == original[10:20]


def test_if_range_mismatch_sends_the_whole_file(http, video, original):
    etag = http.head(video).headers["etag"]
    for validator in ('"stale"', f"W/{etag}", formatdate(0, usegmt=True), "garbage"):
        response = http.get(video, headers={"range": "bytes=10-19", "if-range": validator})
        assert response.status_code == 200, validator
        assert response.content == original
        assert "content-range" not in response.headers


@pytest.mark.parametrize("header", [None, "bytes=100-199", "bytes=0-9,100-109"])
def test_head_answers_the_get_headers_without_body(app, http, video, header):
    headers = {"range": header} if header else {}
    got, head = http.get(video, headers=headers), http.head(video, headers=headers)
    assert head.status_code == got.status_code
    assert head.content == b""
    names = ["content-range", "etag", "last-modified", "accept-ranges", "cache-control"]
    if app.server == "granian" or header is None or "," not in header:
        names.append("content-length")  # Robyn's server drops it on streams
    for name in names:
        assert head.headers.get(name) == got.headers.get(name), name
    assert head.headers["content-type"].split(";")[0] == got.headers["content-type"].split(";")[0]


# -- bad requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/media/..%2f..", None),
        ("/api/media/..%2F..%2Fetc%2Fpasswd", None),
        ("/api/media/abc", 422),
        ("/api/media/0", 422),
        ("/api/media/1.5", 422),
        ("/api/media/-1", 422),
        ("/api/media/99999999999999999999999", 422),
        (signed(987654321), 404),
    ],
)
def test_bad_or_unknown_asset_is_4xx_json(http, path, status):
    response = http.get(path)
    assert 400 <= response.status_code < 500, (path, response.status_code)
    if status is not None:
        assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["status"] == "fail"
    assert b"root:" not in response.content


def test_unsatisfiable_range_is_416_with_size(http, video, original):
    response = http.get(video, headers={"range": f"bytes={len(original)}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(original)}"
    assert response.json()["error"]["details"] == {"size": len(original)}


def test_positions_past_64_bits_are_read_as_beyond_the_file(http, video, original):
    huge = "9" * 30
    beyond = http.get(video, headers={"range": f"bytes={huge}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(original)}"
    clamped = http.get(video, headers={"range": f"bytes=10-{huge}"})
    assert clamped.status_code == 206
    assert clamped.headers["content-range"] == f"bytes 10-{len(original) - 1}/{len(original)}"
    assert clamped.content == original[10:]


# -- real clients ------------------------------------------------------------------------------

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffmpeg not installed")


@needs_ffmpeg
@pytest.mark.parametrize("slug", [MOOV_FIRST, MOOV_LAST])
def test_ffprobe_reads_the_clip_over_http(app, slug):
    url = app.base_url + signed(assets_by_slug(app.base_url)[slug]["video"])
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name", "-of", "csv=p=0", url],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()
    assert {"h264", "aac"} <= set(out)
    assert abs(float(out[-1]) - 8.0) < 0.2


@needs_ffmpeg
def test_ffmpeg_seeks_and_extracts_a_frame(app, video, tmp_path):
    frame = tmp_path / "frame.png"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-ss", "4", "-i", app.base_url + video, "-frames:v", "1", str(frame)],
        check=True, capture_output=True, timeout=60,
    )
    assert frame.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    size = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0",
                           str(frame)], capture_output=True, text=True, check=True).stdout.strip()
    assert size == "426,240"


def test_curl_resumes_an_interrupted_download(app, video, original, tmp_path):
    target = tmp_path / "download.mp4"
    half = len(original) // 2
    subprocess.run(["curl", "-sf", "-r", f"0-{half - 1}", "-o", str(target), app.base_url + video],
                   check=True, timeout=60)
    assert target.stat().st_size == half
    subprocess.run(["curl", "-sf", "-C", "-", "-o", str(target), app.base_url + video], check=True, timeout=60)
    assert target.read_bytes() == original


# -- X-Accel-Redirect behind a real nginx --------------------------------------------------------

ACCEL_PREFIX = "/_protected_media/"


@pytest.fixture(scope="module")
def accel(live_data, tmp_path_factory):
    """Granian in X-Accel-Redirect mode, behind nginx rendered from nginx/vedina.conf."""
    env = {**live_data(PROFILE), "MEDIA_ACCEL_REDIRECT": ACCEL_PREFIX}
    app = LiveServer(server="granian", env=env, workers=1)
    try:
        with Nginx.proxy(tmp_path_factory.mktemp("nginx-proxy"), upstream_port=app.port,
                         media_root=media_dir(live_data)) as proxy:
            yield app, proxy
    finally:
        app.stop()


def test_accel_mode_app_answers_redirect_without_body(accel):
    app, _ = accel
    asset = assets_by_slug(app.base_url)[MOOV_LAST]["video"]
    response = httpx.get(app.base_url + signed(asset), headers={"range": "bytes=0-9"})
    assert response.status_code == 200
    assert response.headers["x-accel-redirect"] == f"{ACCEL_PREFIX}demo/{MOOV_LAST}.mp4"
    assert response.content == b""


def test_accel_mode_through_nginx_serves_ranges(accel, original):
    app, proxy = accel
    url = proxy.base_url + signed(assets_by_slug(app.base_url)[MOOV_LAST]["video"])  # nginx passes ?t= on
    with httpx.Client(timeout=30) as client:
        full = client.get(url, headers={"x-request-id": "trace-accel-1"})
        assert full.status_code == 200 and full.content == original
        assert "x-accel-redirect" not in full.headers
        assert full.headers["content-type"] == "video/mp4"
        assert full.headers["x-request-id"] == "trace-accel-1"
        assert full.headers["cache-control"] == "private, max-age=3600"
        assert full.headers["x-content-type-options"] == "nosniff"

        single = client.get(url, headers={"range": "bytes=100-199"})
        assert single.status_code == 206
        assert single.headers["content-range"] == f"bytes 100-199/{len(original)}"
        assert single.content == original[100:200]

        multi = client.get(url, headers={"range": "bytes=0-9,-10"})
        assert multipart_parts(multi) == [
            ("bytes 0-9", original[:10]),
            (f"bytes {len(original) - 10}-{len(original) - 1}", original[-10:]),
        ]
        assert client.get(url, headers={"range": f"bytes={len(original)}-"}).status_code == 416
        assert client.get(url, headers={"if-none-match": full.headers["etag"]}).status_code == 304


def test_accel_mode_keeps_app_errors_and_hides_the_internal_location(accel):
    app, proxy = accel
    unknown = httpx.get(proxy.base_url + signed(987654321), timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    asset = assets_by_slug(app.base_url)[MOOV_LAST]["video"]
    unsigned = httpx.get(f"{proxy.base_url}/api/media/{asset}", timeout=10)
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "unauthorized"
    forged = httpx.get(f"{proxy.base_url}{signed(asset)}x", timeout=10)
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "playback_token_invalid"
    direct = httpx.get(f"{proxy.base_url}{ACCEL_PREFIX}demo/{MOOV_LAST}.mp4", timeout=10)
    assert direct.status_code == 404  # "internal": only reachable through the app
    assert not direct.content.startswith(b"\x00\x00\x00")  # no MP4 box
    # Metrics are not served on the public listener (the scraper reads the app directly).
    assert httpx.get(f"{proxy.base_url}/metrics", timeout=10).status_code == 404
    assert httpx.get(f"{app.base_url}/metrics", timeout=10).status_code == 200


def test_multi_range_answers_carry_the_standard_headers_on_both_servers(http, video):
    response = http.get(video, headers={"range": "bytes=0-9,100-109", "x-request-id": "multi-1"})
    assert response.status_code == 206
    assert response.headers["x-request-id"] == "multi-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "private" in response.headers["cache-control"]
