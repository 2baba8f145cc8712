"""The ceiling on Granian: the smallest RSGI app, one fixed ~300-byte JSON answer.

No routing, no checks, no I/O: whatever the method, path and headers, the same
body. ``benches/load/bench_api.py`` starts it from the repository root with

    granian --interface rsgi --workers 2 --no-ws --port P benches.peers.bare_rsgi:app

and compares Vedina's request rates with its rate.
"""

import json

BODY = json.dumps(
    {
        "id": 1,
        "slug": "color-bars",
        "title": "The Color Bars",
        "synopsis": "Seven stripes wait for a signal that never comes.",
        "release_year": 1953,
        "duration_seconds": 8,
        "maturity_rating": "G",
        "genres": ["drama", "documentary"],
        "assets": [{"id": 1, "kind": "video", "content_type": "video/mp4", "size_bytes": 123456}],
    },
    separators=(",", ":"),
).encode()
HEADERS = [("content-type", "application/json")]


async def app(scope, proto):
    proto.response_bytes(200, HEADERS, BODY)
