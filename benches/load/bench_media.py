"""Random 1 MiB ranges of a 256 MiB file: Vedina vs nginx vs Starlette.

    python benches/load/bench_media.py [--seconds 10] [--threads 2] [--connections 32]

Starts, one after the other and each on a free 127.0.0.1 port:

(a) Vedina on Granian, 2 workers, serving the file as a media asset through
    /api/media/:id (rate limiting off: this measures the byte path);
(b) nginx, 2 workers, serving the same file from disk;
(c) Starlette ``FileResponse`` under uvicorn, 2 workers, uvloop + httptools
    (without them uvicorn with workers leaves Nagle on: ~40 ms per answer);

checks that each answers a range with the right bytes, then drives it with
``wrk`` and a Lua script asking for a random 1 MiB range per request. Prints
req/s, MiB/s and the ratios ours/nginx (aim 0.7x) and ours/starlette (aim 3x).
Needs nginx and wrk (``bash scripts/services.sh`` installs both) and the
``bench`` extra (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.http.nginx_helper import Nginx, free_port  # noqa: E402

FILE_MIB = 256
RANGE_BYTES = 1 << 20
VEDINA = str(Path(sys.executable).with_name("vedina"))
BENCH_SECRET = "bench-only-session-secret-0123456789abcdef"

WRK_SCRIPT = """\
-- One random 1 MiB range per request, anywhere in the file.
local size = {size}
local span = {span}
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("id", threads)
end
init = function(args)
  math.randomseed(os.time() * 1000 + id)  -- a different sequence per thread
end
request = function()
  local start = math.random(0, size - span)
  return wrk.format("GET", nil, {{["Range"] = "bytes=" .. start .. "-" .. (start + span - 1)}})
end
"""

STARLETTE_APP = """\
import os

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

PATH = os.environ["BENCH_FILE"]


async def media(request):
    return FileResponse(PATH, media_type="video/mp4")


app = Starlette(routes=[Route("/media", media)])
"""


def make_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for _ in range(FILE_MIB // 8):
            out.write(os.urandom(8 << 20))


def wait_http(url: str, process: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(url, headers={"range": "bytes=0-0"}, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} not answering after {timeout}s")


@contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    try:
        yield proc
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue


def add_asset(env: dict[str, str], relative: str) -> int:
    """A movie with one video asset for the file, through the repository functions."""
    subprocess.run([VEDINA, "migrate"], env={**os.environ, **env}, check=True, capture_output=True, timeout=120)
    from vedina.config import load_settings
    from vedina.storage.movies import MovieRepository
    from vedina.storage.resources import open_resources

    async def insert() -> int:
        resources = await open_resources(load_settings(env))
        try:
            async with resources.engine.begin() as conn:
                movie_id = await MovieRepository.insert(
                    conn, slug="bench-256", title="Bench 256 MiB", synopsis="Random bytes.",
                    maturity_rating="G", genres=[],
                )
                return await MovieRepository.insert_asset(
                    conn, movie_id=movie_id, kind="video", path=relative, content_type="video/mp4",
                    size_bytes=FILE_MIB << 20,
                )
        finally:
            await resources.close()

    return asyncio.run(insert())


def signed_token(asset_id: int) -> str:
    """A playback token for the asset, as GET /api/movies/:id/playback would sign it (no session:
    the check is the Rust MAC only, what every range request of a player pays)."""
    from vedina.config import load_settings
    from vedina.security.playback_tokens import PlaybackTokens

    tokens = PlaybackTokens.from_settings(load_settings({"SESSION_SECRET": BENCH_SECRET, "PLAYBACK_URL_TTL_SECONDS": "86400"}))
    return tokens.issue(user_id=1, asset_id=asset_id)


def check_range(url: str, data_file: Path) -> None:
    start = (FILE_MIB << 20) // 3
    response = httpx.get(url, headers={"range": f"bytes={start}-{start + RANGE_BYTES - 1}"}, timeout=30)
    with open(data_file, "rb") as f:
        f.seek(start)
        expected = f.read(RANGE_BYTES)
    if response.status_code != 206 or response.content != expected:
        raise RuntimeError(f"{url}: wrong answer {response.status_code} ({len(response.content)} bytes)")


def run_wrk(url: str, script: Path, args: argparse.Namespace) -> float:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "10s",
               "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 60, check=True).stdout
    if "Non-2xx or 3xx responses" in out or "Socket errors" in out:
        print(out, file=sys.stderr)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return float(match.group(1))


def measure(name: str, url: str, data_file: Path, script: Path, args: argparse.Namespace) -> float:
    check_range(url, data_file)
    quick = argparse.Namespace(**{**vars(args), "seconds": 2})
    run_wrk(url, script, quick)  # warm-up: page cache, worker start-up
    rate = run_wrk(url, script, args)
    print(f"  {name:<34} {rate:>9,.0f} req/s {rate * RANGE_BYTES / (1 << 20):>9,.0f} MiB/s", flush=True)
    return rate

# The ceiling for any app on Granian: the smallest RSGI app that answers a range
# with response_file_range (no routing, no checks, no middleware).
BARE_GRANIAN_APP = """\
import os

PATH = os.environ["BENCH_FILE"]
SIZE = os.path.getsize(PATH)


async def app(scope, protocol):
    first, _, last = scope.headers.get("range")[6:].partition("-")
    start, end = int(first), int(last) + 1
    headers = [("content-type", "video/mp4"), ("content-length", str(end - start)),
               ("content-range", f"bytes {start}-{end - 1}/{SIZE}")]
    protocol.response_file_range(206, headers, PATH, start, end)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin") is None:
            print(f"bench_media: {tool} is missing (bash scripts/services.sh installs it)", file=sys.stderr)
            return 2

    with tempfile.TemporaryDirectory(prefix="vedina-bench-media-") as tmp:
        root = Path(tmp)
        media_root = root / "media"
        relative = "bench/random-256mib.mp4"
        data_file = media_root / relative
        make_file(data_file)
        script = root / "ranges.lua"
        script.write_text(WRK_SCRIPT.format(size=FILE_MIB << 20, span=RANGE_BYTES))
        env = {"DATA_DIR": str(root), "LOG_LEVEL": "warning", "RATE_LIMIT_ENABLED": "false", "VEDINA_ENV": "test",
               "SESSION_SECRET": BENCH_SECRET, "PLAYBACK_URL_TTL_SECONDS": "86400"}
        asset_id = add_asset(env, relative)
        print(f"random {RANGE_BYTES >> 20} MiB ranges of a {FILE_MIB} MiB file, wrk -t{args.threads} "
              f"-c{args.connections} -d{args.seconds}s, 2 workers each, 127.0.0.1")

        def ours() -> float:
            port = free_port()
            command = [VEDINA, "serve", "--server", "granian", "--workers", "2", "--host", "127.0.0.1",
                       "--port", str(port)]
            with process(command, env, root / "granian.log") as proc:
                url = f"http://127.0.0.1:{port}/api/media/{asset_id}?t={signed_token(asset_id)}"
                wait_http(url, proc)
                return measure("vedina (granian, /api/media/:id)", url, data_file, script, args)

        def nginx() -> float:
            with Nginx.static(root / "nginx", root=media_root, workers=2) as server:
                url = f"{server.base_url}/{relative}"
                wait_http(url)
                return measure("nginx (static file)", url, data_file, script, args)

        def starlette() -> float:
            port = free_port()
            (root / "bench_starlette.py").write_text(STARLETTE_APP)
            command = [sys.executable, "-m", "uvicorn", "--app-dir", str(root), "bench_starlette:app",
                       "--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--loop", "uvloop",
                       "--http", "httptools", "--log-level", "warning", "--no-access-log"]
            with process(command, {"BENCH_FILE": str(data_file)}, root / "uvicorn.log") as proc:
                url = f"http://127.0.0.1:{port}/media"
                wait_http(url, proc)
                return measure("starlette FileResponse (uvicorn)", url, data_file, script, args)

        def bare_granian() -> float:
            port = free_port()
            (root / "bench_bare.py").write_text(BARE_GRANIAN_APP)
            command = [sys.executable, "-m", "granian", "--interface", "rsgi", "--workers", "2", "--host",
                       "127.0.0.1", "--port", str(port), "--log-level", "warning", "--working-dir", str(root),
                       "bench_bare:app"]
            with process(command, {"BENCH_FILE": str(data_file)}, root / "bare.log") as proc:
                url = f"http://127.0.0.1:{port}/media"
                wait_http(url, proc)
                return measure("bare granian RSGI response_file_range", url, data_file, script, args)

        runs: dict[str, Callable[[], float]] = {
            "ours": ours, "nginx": nginx, "starlette": starlette, "bare": bare_granian,
        }
        rates = {name: run() for name, run in runs.items()}

    print(f"  ours / nginx     = {rates['ours'] / rates['nginx']:.2f}x  (aim 0.7x)")
    print(f"  ours / starlette = {rates['ours'] / rates['starlette']:.2f}x  (aim 3x)")
    print(f"  ours / bare granian = {rates['ours'] / rates['bare']:.2f}x  "
          f"(the ceiling on Granian: bare / nginx = {rates['bare'] / rates['nginx']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
