"""API reads under load: Vedina vs a bare Granian RSGI app vs a plain FastAPI peer.

    python benches/load/bench_api.py [--seconds 5] [--rounds 3] [--threads 2] [--connections 32] [--profiles embedded,real]

Starts, one after the other and each with 2 workers on a free 127.0.0.1 port:

(a) ``benches/peers/bare_rsgi.py`` on Granian: one fixed ~300-byte JSON answer,
    the ceiling for any app on Granian. It runs for the whole bench, and every
    Vedina figure alternates with it (``--rounds`` times, same connections and
    wrk script; the round with the median ratio is kept): the machine drifts by
    tens of percent within a run, so each ratio compares neighbouring runs;
(b) for each storage profile (``embedded``: SQLite file; ``real``: MariaDB
    database ``vedina_bench``, Redis db 5 and RabbitMQ, as started by
    ``bash scripts/services.sh``): first Vedina on Granian (rate limiting off),
    then ``benches/peers/fastapi_app.py`` under uvicorn (uvloop + httptools) on
    the same database (and, on the real profile, the same Redis).

Each profile's database is prepared from scratch (migrations, ``vedina
demo-data``, then 200 extra movie rows); both apps share one explicit HS256
key (``JWT_SIGNING_KEYS``), so the access token a bench user gets from
Vedina's ``/api/auth/login`` is accepted by the peer too.

Vedina and the peer are driven by ``wrk --latency`` (each run after a short
warm-up) on ``/api/movies/1`` anonymous and with the bearer token,
``/api/movies?limit=20`` anonymous and ``/api/users/me`` with the bearer
token, plus ``/health``, the catalog, viewer, playback and billing reads on Vedina
(the bench user subscribes to a demo plan through ``vedina provider-sim``); then Vedina's cached reads (the movie and
the page) again at 64 connections, for their p99. The bare app answers every
path alike, so it is driven once at each connection count. Before its wrk
runs, each Vedina and peer server also gets the "cache miss" test: 100 movies
never read before, each read once in sequence by httpx (median latency), on
Vedina (caches empty) and on the peer (no cache; its database has just served
the same rows to Vedina).

Prints a table (req/s, p50, p99) and the project's aims, each marked met or
missed. Needs wrk, the services (``bash scripts/services.sh``) and the
``bench`` extra (``pip install -e .[test,bench]``). Servers run in their own
process groups and are stopped on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import redis
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benches.load.bench_media import process, run_wrk, wait_http  # noqa: E402
from tests.conftest import (  # noqa: E402
    VEDINA,
    free_port,
    profile_env,
    reset_database,
    run_cli,
    session_provider_sim,
    wait_for_probe_jobs,
)
from vedina.config import Settings, load_settings  # noqa: E402
from vedina.storage.clock import utcnow  # noqa: E402
from vedina.storage.database import create_engine  # noqa: E402
from vedina.storage.schema import movies  # noqa: E402

PROFILES = ("embedded", "real")
BARE_TARGETS = ("bare rsgi", "bare rsgi, again")  # measured first and last
# What scripts/test.sh exports for the real profile (services.sh starts them on loopback).
REAL_SERVICES = {
    "VEDINA_TEST_DB_HOST": "127.0.0.1",
    "VEDINA_TEST_DB_PASSWORD": "vedina-test-password",
    "VEDINA_TEST_REDIS": "redis://127.0.0.1:6379",
    "VEDINA_TEST_AMQP": "amqp://guest:guest@127.0.0.1:5672/",
}
EXTRA_MOVIES = 200
MISS_READS = 100
HIGH_CONNECTIONS = 64
USER = {"email": "bench@example.org", "password": "correct horse battery staple", "display_name": "Bench"}
# No request() function in either script: wrk then sends one prepared request without
# calling Lua per request (a per-request Lua call caps wrk itself near the bare app's rate).
PLAIN_GET = "-- the URL's GET, as prepared by wrk\n"
BEARER_GET = 'wrk.headers["Authorization"] = "Bearer {token}"\n'
PROFILE_GET = BEARER_GET + 'wrk.headers["X-Profile-Id"] = "{profile}"\n'


class Endpoint(NamedTuple):
    label: str
    path: str
    bearer: bool = False
    profile: bool = False  # also X-Profile-Id: a kid profile with a parental limit


HEALTH = Endpoint("GET /health", "/health")
MOVIE = Endpoint("GET /api/movies/1", "/api/movies/1")
MOVIE_BEARER = Endpoint("GET /api/movies/1 +bearer", "/api/movies/1", bearer=True)
LIST = Endpoint("GET /api/movies?limit=20", "/api/movies?limit=20")
ME = Endpoint("GET /api/users/me +bearer", "/api/users/me", bearer=True)
PEER_ENDPOINTS = [MOVIE, MOVIE_BEARER, LIST, ME]
# Issue 9's reads, on Vedina only (the peer has no such endpoints).
SEARCH = Endpoint("GET /api/movies?q=bench%20movie", "/api/movies?q=bench%20movie")
SEARCH_BEARER = Endpoint("GET /api/movies?q=bench%20movie +bearer", "/api/movies?q=bench%20movie", bearer=True)
GENRE = Endpoint("GET /api/movies?genre=drama&sort=title", "/api/movies?genre=drama&sort=title")
MOVIE_PROFILE = Endpoint("GET /api/movies/1 +bearer +profile", "/api/movies/1", bearer=True, profile=True)
PROFILES_LIST = Endpoint("GET /api/profiles +bearer", "/api/profiles", bearer=True)
PROGRESS = Endpoint("GET /api/movies/1/progress +bearer", "/api/movies/1/progress", bearer=True)
CONTINUE = Endpoint("GET /api/users/me/continue-watching +bearer", "/api/users/me/continue-watching", bearer=True)
PLAYBACK = Endpoint("GET /api/movies/1/playback +bearer", "/api/movies/1/playback?device_id=bench", bearer=True)
CATALOG_ENDPOINTS = [SEARCH, SEARCH_BEARER, GENRE, MOVIE_PROFILE, PROFILES_LIST, PROGRESS, CONTINUE, PLAYBACK]
PLANS = Endpoint("GET /api/plans", "/api/plans")
PLANS_BEARER = Endpoint("GET /api/plans +bearer", "/api/plans", bearer=True)
SUBSCRIPTION = Endpoint("GET /api/subscriptions/current +bearer", "/api/subscriptions/current", bearer=True)
PAYMENTS = Endpoint("GET /api/payments +bearer", "/api/payments", bearer=True)
BILLING_ENDPOINTS = [PLANS, PLANS_BEARER, SUBSCRIPTION, PAYMENTS]
VEDINA_ENDPOINTS = [HEALTH, *PEER_ENDPOINTS, *CATALOG_ENDPOINTS, *BILLING_ENDPOINTS]
# --only billing: the billing reads next to the references they are judged by (no peer run).
BILLING_RUN = [HEALTH, MOVIE_BEARER, ME, PLAYBACK, *BILLING_ENDPOINTS]
CACHED_READS = [MOVIE, MOVIE_BEARER, LIST]  # Vedina answers these from memory once warm
ANY = Endpoint("GET /health (any path)", "/health")  # the bare app answers every request alike


class Result(NamedTuple):
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers, connect errors and timeouts


# -- wrk ----------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(out: str) -> Result:
    """Requests/sec, the 50% and 99% lines of ``--latency``'s distribution, and errors."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    latency = {q: re.search(rf"^\s*{q}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE) for q in (50, 99)}
    if rate is None or None in latency.values():
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    p50, p99 = (float(m.group(1)) * _UNIT_MS[m.group(2)] for m in latency.values())
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read \d+, write \d+, timeout (\d+)", out)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    return Result(float(rate.group(1)), p50, p99, errors)


def run_wrk_latency(url: str, script: Path, args: argparse.Namespace) -> Result:
    """Like bench_media's ``run_wrk`` (warm-ups use it), with ``--latency`` percentiles."""
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "10s",
               "--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 60, check=True).stdout
    result = parse_wrk(out)
    if result.errors:
        print(out, file=sys.stderr)
    return result


def with_(args: argparse.Namespace, **changes) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


# -- preparing a profile -------------------------------------------------------------


def bench_env(profile: str, data_dir: Path, jwt_keys: str) -> dict[str, str]:
    data_dir.mkdir(parents=True)
    env = profile_env(profile, data_dir, database="vedina_bench", redis_db=5, amqp_prefix="vedina-bench")
    return {**env, "RATE_LIMIT_ENABLED": "false", "JWT_SIGNING_KEYS": jwt_keys, "REQUIRE_VERIFIED_EMAIL": "false"}


async def add_movies(settings: Settings) -> list[int]:
    """EXTRA_MOVIES more rows, written directly (no server is running yet); their ids."""
    now = utcnow()
    rows = [
        {"slug": f"bench-{n:04d}", "title": f"Bench Movie {n}", "sort_title": f"bench movie {n}",
         "synopsis": "A movie that is only ever benchmarked.", "release_year": 1950 + n % 70,
         "duration_seconds": 5400 + n, "maturity_rating": "PG", "genres": ["drama"], "spoken_languages": [],
         "subtitle_languages": [], "status": "published", "published_at": now, "created_at": now, "updated_at": now}
        for n in range(EXTRA_MOVIES)
    ]
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(movies), rows)
            ids = await conn.execute(sa.select(movies.c.id).where(movies.c.slug.like("bench-%")).order_by(movies.c.id))
            return list(ids.scalars())
    finally:
        await engine.dispose()


def prepare(profile: str, env: dict[str, str]) -> list[int]:
    """A fresh database with the demo catalog and the extra movies; the ids of the latter."""
    settings = load_settings(env)
    if profile == "real":
        logging.getLogger("asyncmy").setLevel(logging.ERROR)  # MariaDB's notes on named primary keys
        asyncio.run(reset_database(settings))
        with redis.from_url(settings.redis_url) as client:
            client.flushdb()
    else:
        run_cli(env, "migrate")
    run_cli(env, "demo-data")
    return asyncio.run(add_movies(settings))


def peer_database_url(settings: Settings) -> str:
    url = sa.make_url(settings.database_url)
    if settings.db_password:
        url = url.set(password=settings.db_password)
    return url.render_as_string(hide_password=False)


# -- servers -------------------------------------------------------------------------


@contextmanager
def server(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """Run ``command`` (``{port}`` filled in) in its own process group; yield its base URL once it answers."""
    port = free_port()
    argv = [part.format(port=port) for part in command]
    with process(argv, env, log_dir / f"{name.replace(' ', '-')}.log") as proc:
        base_url = f"http://127.0.0.1:{port}"
        wait_http(base_url + MOVIE.path, proc)
        yield base_url


BARE_COMMAND = [sys.executable, "-m", "granian", "--interface", "rsgi", "--workers", "2", "--no-ws",
                "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning", "--working-dir", str(REPO),
                "benches.peers.bare_rsgi:app"]
VEDINA_COMMAND = [VEDINA, "serve", "--server", "granian", "--workers", "2", "--host", "127.0.0.1",
                  "--port", "{port}"]
PEER_COMMAND = [sys.executable, "-m", "uvicorn", "--app-dir", str(REPO), "benches.peers.fastapi_app:app",
                "--host", "127.0.0.1", "--port", "{port}", "--workers", "2", "--loop", "uvloop",
                "--http", "httptools", "--log-level", "warning", "--no-access-log"]


def peer_env(env: dict[str, str]) -> dict[str, str]:
    settings = load_settings(env)
    return {"DATABASE_URL": peer_database_url(settings), "REDIS_URL": settings.redis_url,
            "JWT_SIGNING_KEYS": env["JWT_SIGNING_KEYS"]}


def sign_in(base_url: str) -> str:
    """Register the bench user and log in: a bearer access token."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.post("/api/auth/register", json=USER).raise_for_status()
        login = client.post("/api/auth/login", json={"email": USER["email"], "password": USER["password"]})
        login.raise_for_status()
        return login.json()["access_token"]


def first_reads_ms(base_url: str, movie_ids: list[int]) -> float:
    """Median latency of reading each movie once, in sequence, on one warmed-up connection."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for _ in range(20):
            client.get(MOVIE.path).raise_for_status()
        times = []
        for movie_id in movie_ids:
            start = time.perf_counter()
            client.get(f"/api/movies/{movie_id}").raise_for_status()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


# -- one run -------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.results: dict[tuple[str, str], Result] = {}
        # (target, endpoint) -> the bare app's rate measured right before it, same connections.
        self.ceilings: dict[tuple[str, str], float] = {}
        self.bare_url: str | None = None
        self.misses: dict[str, float] = {}
        anonymous = root / "get.lua"
        anonymous.write_text(PLAIN_GET)
        self.scripts = {(False, False): anonymous}

    def use_token(self, token: str, profile: str, base_url: str) -> None:
        script = self.root / f"bearer-{profile}.lua"
        script.write_text(BEARER_GET.format(token=token))
        self.scripts[True, False] = script
        with httpx.Client(base_url=base_url, timeout=30, headers={"authorization": f"Bearer {token}"}) as client:
            kid = client.post("/api/profiles", json={"name": "Kid", "max_age_rating": "PG"})
            kid.raise_for_status()
            # A paid subscription (a demo plan, the simulator's test card): playback's plan comes from it.
            premium = next(p for p in client.get("/api/plans").json()["items"] if p["code"] == "premium-monthly")
            client.post("/api/subscriptions", json={"plan_id": premium["id"], "payment_method": "pm_card_visa"},
                        headers={"idempotency-key": secrets.token_hex(16)}).raise_for_status()
            client.put("/api/movies/1/progress", json={"position_seconds": 60, "duration_seconds": 480})
        with_profile = self.root / f"profile-{profile}.lua"
        with_profile.write_text(PROFILE_GET.format(token=token, profile=kid.json()["id"]))
        self.scripts[True, True] = with_profile

    def drive(self, target: str, base_url: str, endpoints: list[Endpoint], connections: int) -> None:
        args = with_(self.args, connections=connections)
        paired = self.bare_url is not None and target.startswith("vedina")
        for endpoint in endpoints:
            key = (target, label(endpoint, connections))
            url, script = base_url + endpoint.path, self.scripts[endpoint.bearer, endpoint.profile]
            run_wrk(url, script, with_(args, seconds=self.args.warmup))
            if not paired:
                self.results[key] = run_wrk_latency(url, script, args)
                print(row(*key, self.results[key]), flush=True)
                continue
            # The machine drifts by tens of percent from one run to the next: alternate the
            # bare app and Vedina, and keep the round with the median ratio.
            rounds = []
            for _ in range(self.args.rounds):
                ceiling = run_wrk_latency(self.bare_url + ANY.path, script, args)
                result = run_wrk_latency(url, script, args)
                rounds.append((result.rate / ceiling.rate, result, ceiling.rate))
            rounds.sort(key=lambda r: r[0])
            ratio, self.results[key], self.ceilings[key] = rounds[len(rounds) // 2]
            spread = ", ".join(f"{r[0]:.2f}" for r in rounds)
            print(row(*key, self.results[key]) + f"  ({ratio:.2f}x bare; rounds {spread})", flush=True)

    def bare(self, target: str) -> None:
        self.drive(target, self.bare_url, [ANY], self.args.connections)
        self.drive(target, self.bare_url, [ANY], HIGH_CONNECTIONS)

    def vedina(self, profile: str, env: dict[str, str], miss_ids: list[int]) -> None:
        target = f"vedina {profile}"
        with server(target, VEDINA_COMMAND, env, self.root) as base_url:
            self.use_token(sign_in(base_url), profile, base_url)
            self.misses[target] = first_reads_ms(base_url, miss_ids)
            print(f"  {target:<17} first read of a movie, median {self.misses[target]:.2f} ms", flush=True)
            if self.args.only == "billing":
                self.drive(target, base_url, BILLING_RUN, self.args.connections)
                return
            self.drive(target, base_url, VEDINA_ENDPOINTS, self.args.connections)
            self.drive(target, base_url, CACHED_READS, HIGH_CONNECTIONS)

    def peer(self, profile: str, env: dict[str, str], miss_ids: list[int]) -> None:
        target = f"fastapi {profile}"
        with server(target, PEER_COMMAND, peer_env(env), self.root) as base_url:
            self.misses[target] = first_reads_ms(base_url, miss_ids)
            print(f"  {target:<17} uncached movie read, median {self.misses[target]:.2f} ms", flush=True)
            self.drive(target, base_url, PEER_ENDPOINTS, self.args.connections)

    def profile(self, profile: str, jwt_keys: str) -> None:
        env = bench_env(profile, self.root / profile, jwt_keys)
        miss_ids = prepare(profile, env)[-MISS_READS:]
        if profile == "real":  # as deployed: a `vedina worker` runs the jobs (the demo clips' probes first)
            with process([VEDINA, "worker"], env, self.root / "worker.log"):
                wait_for_probe_jobs(load_settings(env), timeout=120)
                self.vedina(profile, env, miss_ids)
        else:
            self.vedina(profile, env, miss_ids)
        if self.args.only == "billing":
            return
        self.peer(profile, env, miss_ids)  # right after: the bench user's access token lives 15 minutes


def label(endpoint: Endpoint, connections: int) -> str:
    return endpoint.label if connections != HIGH_CONNECTIONS else f"{endpoint.label} @c{connections}"


def row(target: str, endpoint: str, result: Result) -> str:
    errors = f"  {result.errors} errors" if result.errors else ""
    return (f"  {target:<17} {endpoint:<37} {result.rate:>9,.0f} req/s  p50 {result.p50_ms:>6.2f} ms"
            f"  p99 {result.p99_ms:>6.2f} ms{errors}")


# -- report --------------------------------------------------------------------------


def aim(text: str, value: float, goal: float, *, at_least: bool, unit: str = "x") -> str:
    met = value >= goal if at_least else value < goal
    sign = ">=" if at_least else "<"
    return f"  {text:<62} {value:>7.2f}{unit}  (aim {sign} {goal:g}{unit})  {'met' if met else 'MISSED'}"


def aims(bench: Bench, profiles: list[str]) -> list[str]:
    rate = {key: result.rate for key, result in bench.results.items()}
    lines = []
    for profile in profiles:
        ours, peer = f"vedina {profile}", f"fastapi {profile}"

        def bare(endpoint: Endpoint) -> float:
            return bench.ceilings[ours, endpoint.label]

        for endpoint in (MOVIE_BEARER, ME):
            lines.append(aim(f"{endpoint.label}: {ours} / bare", rate[ours, endpoint.label] / bare(endpoint), 0.5,
                             at_least=True))
            lines.append(aim(f"{endpoint.label}: {ours} / {peer}", rate[ours, endpoint.label] / rate[peer, endpoint.label],
                             3, at_least=True))
        lines.append(aim(f"{HEALTH.label}: {ours} / bare", rate[ours, HEALTH.label] / bare(HEALTH), 0.6,
                         at_least=True))
        lines.append(aim(f"first movie read: {ours} / {peer} uncached", bench.misses[ours] / bench.misses[peer], 2,
                         at_least=False))
        for endpoint in CACHED_READS:
            p99 = bench.results[ours, label(endpoint, HIGH_CONNECTIONS)].p99_ms
            lines.append(aim(f"p99 {label(endpoint, HIGH_CONNECTIONS)}: {ours}", p99, 10, at_least=False, unit=" ms"))
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="bare/Vedina alternations per figure (median kept)")
    parser.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated: embedded, real")
    parser.add_argument("--only", choices=["all", "billing"], default="all",
                        help="billing: the billing reads and their references only, no peer")
    args = parser.parse_args()
    args.profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    if not args.profiles or set(args.profiles) - set(PROFILES):
        parser.error(f"--profiles must name some of {', '.join(PROFILES)}")
    args.warmup = 2 if args.seconds >= 4 else 1
    return args


@contextmanager
def provider_simulator() -> Iterator[None]:
    """The payment simulator profile_env points servers at, stopped on the way out."""
    sim = session_provider_sim()
    try:
        yield
    finally:
        sim.stop()


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        print("bench_api: wrk is missing (bash scripts/services.sh installs it)", file=sys.stderr)
        return 2
    for name, value in REAL_SERVICES.items():
        os.environ.setdefault(name, value)
    jwt_keys = "bench:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s (+{args.warmup}s warm-up), "
          f"2 workers each, 127.0.0.1; profiles: {', '.join(args.profiles)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="vedina-bench-api-") as tmp, provider_simulator():
        bench = Bench(args, Path(tmp))
        with server("bare", BARE_COMMAND, {}, bench.root) as bench.bare_url:
            bench.bare(BARE_TARGETS[0])
            for profile in args.profiles:
                bench.profile(profile, jwt_keys)
            bench.bare(BARE_TARGETS[1])
    print("\nresults")
    for (target, endpoint), result in bench.results.items():
        print(row(target, endpoint, result))
    if args.only == "all":
        print("\naims")
        print("\n".join(aims(bench, args.profiles)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
