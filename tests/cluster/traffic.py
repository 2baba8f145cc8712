"""A bounded request loop that writes and reads through the lab's nginx; run inside the client host.

    python -m tests.cluster.traffic --base http://10.213.0.10 --seconds 12 --tag d1 \\
        --editor-token T [--viewer-token V] [--threads 4] --out result.json

Each thread owns one keep-alive connection and repeats, until the time is up:

1. ``POST /api/movies`` as the editor: a new draft with a unique slug (``<tag>-<thread>-<n>``).
   A 201 is an *acknowledged write*: its id goes into the result, and after the drill the harness
   checks every acknowledged id is in the primary database (no lost write).
2. ``GET /api/movies/{id}`` as the editor: the caller's own write, read back at once. A 404 or a
   different title is a *stale own read* (read-your-writes broken), counted apart from failures.
3. ``GET /api/movies?limit=20`` and ``GET /api/movies/1`` anonymously (catalog reads), and
   ``GET /api/users/me`` with the viewer token when one is given;
4. with ``--register``: ``POST /api/auth/register`` of a new address (``<tag>-<thread>-<n>@example.org``),
   whose 202 is acknowledged in ``registered``: each one owes exactly one email, sent by a job.

A request fails when it gets no answer (connect error, reset, timeout) or a 5xx; a 4xx other than the
stale read is a failure too (the loop only sends valid requests). The result (JSON) has the counts,
the failures by kind, and when each failure happened (seconds since the start), so a drill can tell
failures at the moment of a fault from failures afterwards.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.failed: Counter[str] = Counter()
        self.failure_times: list[float] = []
        self.acked: list[int] = []
        self.registered: list[str] = []
        self.stale_own_reads = 0
        self.started = time.monotonic()

    def ok(self) -> None:
        with self.lock:
            self.sent += 1

    def fail(self, kind: str) -> None:
        with self.lock:
            self.sent += 1
            self.failed[kind] += 1
            self.failure_times.append(round(time.monotonic() - self.started, 3))


def _send(tally: Tally, client: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response | None:
    try:
        response = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        tally.fail(f"{method} {type(exc).__name__}")
        return None
    if response.status_code >= 500:
        tally.fail(f"{method} {response.status_code}")
        return None
    return response


def loop(args: argparse.Namespace, thread: int, tally: Tally, deadline: float) -> None:
    editor = {"authorization": f"Bearer {args.editor_token}"}
    viewer = {"authorization": f"Bearer {args.viewer_token}"} if args.viewer_token else None
    with httpx.Client(base_url=args.base, timeout=args.timeout) as client:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            title = f"Drill {args.tag} {thread} {n}"
            created = _send(tally, client, "POST", "/api/movies", headers=editor,
                            json={"title": title, "slug": f"{args.tag}-{thread}-{n}"})
            if created is not None:
                if created.status_code == 201:
                    tally.ok()
                    movie_id = created.json()["id"]
                    with tally.lock:
                        tally.acked.append(movie_id)
                    own = _send(tally, client, "GET", f"/api/movies/{movie_id}", headers=editor)
                    if own is not None:
                        if own.status_code == 200 and own.json()["title"] == title:
                            tally.ok()
                        else:
                            with tally.lock:
                                tally.sent += 1
                                tally.stale_own_reads += 1
                else:
                    tally.fail(f"POST {created.status_code}")
            if args.register:
                email = f"{args.tag}-{thread}-{n}@example.org"
                joined = _send(tally, client, "POST", "/api/auth/register",
                               json={"email": email, "password": "correct horse battery staple", "display_name": "D"})
                if joined is not None:
                    if joined.status_code == 202:
                        tally.ok()
                        with tally.lock:
                            tally.registered.append(email)
                    else:
                        tally.fail(f"POST {joined.status_code}")
            for path, headers in (("/api/movies?limit=20", None), ("/api/movies/1", None),
                                  *((("/api/users/me", viewer),) if viewer else ())):
                read = _send(tally, client, "GET", path, headers=headers)
                if read is not None:
                    if read.status_code == 200:
                        tally.ok()
                    else:
                        tally.fail(f"GET {read.status_code}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--editor-token", required=True)
    parser.add_argument("--viewer-token")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--register", action="store_true")
    parser.add_argument("--timeout", type=float, default=15)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    tally = Tally()
    deadline = tally.started + args.seconds
    threads = [threading.Thread(target=loop, args=(args, n, tally, deadline)) for n in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    args.out.write_text(json.dumps({
        "sent": tally.sent, "failed": sum(tally.failed.values()), "failures": dict(tally.failed),
        "failure_times": tally.failure_times, "acked": sorted(tally.acked),
        "stale_own_reads": tally.stale_own_reads, "registered": tally.registered, "seconds": round(time.monotonic() - tally.started, 2),
    }))


if __name__ == "__main__":
    main()
