"""The HTTP side of ``Idempotency-Key`` (:mod:`vedina.services.idempotency`).

>>> @router.post("/")
... @requires("account:self")
... @idempotent(lambda: state.services.idempotency)
... async def subscribe(request): ...

The header is required on the routes it guards: 1-255 printable ASCII
characters (a UUID is typical). A replayed answer carries ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import functools
import re

from robyn import Request

from vedina.errors import BadRequest
from vedina.http.auth import principal_of
from vedina.http.responses import encode_json, encoded_json_response
from vedina.services.idempotency import request_hash

HEADER = "idempotency-key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def idempotent(service):
    """Guard a handler; ``service`` returns the IdempotencyService (looked up per request)."""

    def decorate(handler):
        @functools.wraps(handler)
        async def guarded(request: Request):
            key = request.headers.get(HEADER)
            if key is None:
                raise BadRequest("This request moves money: send an Idempotency-Key header (e.g. a UUID)",
                                 details={"header": "Idempotency-Key"})
            if not _KEY.match(key):
                raise BadRequest("Idempotency-Key must be 1-255 printable ASCII characters",
                                 details={"header": "Idempotency-Key"})
            principal = principal_of(request)
            body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
            fingerprint = request_hash(request.method, request.url.path, body)

            async def call() -> tuple[int, bytes]:
                response = await handler(request)
                description = response.description
                return response.status_code, description if isinstance(description, bytes) else description.encode()

            (status, answer), replayed = await service().run(
                owner=f"{principal.kind}:{principal.subject}", key=key, fingerprint=fingerprint, call=call,
                encode=encode_json,
            )
            return encoded_json_response(answer, status=status,
                                         headers={"idempotent-replayed": "true" if replayed else "false"})

        return guarded

    return decorate
