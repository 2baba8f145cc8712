"""The same Vedina app on Granian (through the RSGI bridge) and on Robyn's own server.

    python benches/load/bench_servers.py [--seconds 8] [--threads 2] [--connections 32]

Loads the demo catalog into a temporary embedded database, then starts each
server with 2 workers on a free 127.0.0.1 port and drives three endpoints with
``wrk`` (bounded runs, loopback only): ``/health`` (no I/O), ``/api/movies``
(a page from the database) and ``/api/movies/1`` (one movie with its assets).
Prints req/s per server and the ratio Granian / Robyn for each endpoint. Rate
limiting is off: this measures serving, not the limiter.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benches.load.bench_media import run_wrk  # noqa: E402
from tests.conftest import LiveServer, run_cli  # noqa: E402

ENDPOINTS = ["/health", "/api/movies", "/api/movies/1"]
PLAIN_GET = "request = function() return wrk.format('GET') end\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vedina-bench-servers-") as tmp:
        root = Path(tmp)
        env = {"DATA_DIR": str(root), "LOG_LEVEL": "warning", "RATE_LIMIT_ENABLED": "false", "VEDINA_ENV": "test"}
        for command in ("migrate", "demo-data"):
            run_cli(env, command)
        script = root / "get.lua"
        script.write_text(PLAIN_GET)
        print(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, 2 workers each, 127.0.0.1")
        rates: dict[tuple[str, str], float] = {}
        for server in ("granian", "robyn"):
            live = LiveServer(server=server, env=env, workers=2)
            try:
                for path in ENDPOINTS:
                    quick = argparse.Namespace(**{**vars(args), "seconds": 2})
                    run_wrk(live.base_url + path, script, quick)  # warm-up
                    rates[server, path] = rate = run_wrk(live.base_url + path, script, args)
                    print(f"  {server:<8} {path:<16} {rate:>10,.0f} req/s", flush=True)
            finally:
                live.stop()
    for path in ENDPOINTS:
        print(f"  granian / robyn  {path:<16} = {rates['granian', path] / rates['robyn', path]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
