"""``Idempotency-Key``: a money-moving request sent twice does its work once.

The first request under a key (per caller) runs and its answer -- status and
body, errors included -- is kept for ``TTL``; the same key with the same request
(method, path and body, hashed) gets that answer again, marked replayed. The
same key with another request is refused (422 ``idempotency_key_reused``). A
second request while the first still runs waits for its answer (up to
``WAIT``), so two concurrent POSTs with one key make one charge and get one
answer; still running after that is 409 ``idempotency_key_in_use``.

An outage (a 5xx) is not an answer: the key is released so a retry runs again.
What the request did before the outage is guarded by its own unique keys
(a payment's ``charge_key``, the provider's idempotency key).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from vedina.errors import AppError, Conflict, IdempotencyKeyReused, error_body
from vedina.storage.idempotency_keys import IdempotencyKeyRepository

TTL = timedelta(hours=24)
# A request still "running" after this long died with its process (no request runs this long:
# provider calls time out well before): its key is taken over, so a retry is not refused for 24 h.
STALE = timedelta(minutes=5)
WAIT = 15.0  # seconds a repeat waits for the first request's answer
POLL = 0.05

# (status, encoded JSON body) of an answer.
Answer = tuple[int, bytes]


def request_hash(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


class IdempotencyService:
    def __init__(self, *, keys: IdempotencyKeyRepository, wait: float = WAIT,
                 clock: Callable[[], float] = time.time) -> None:
        self._keys = keys
        self._wait = wait
        self.clock = clock  # injectable: tests move time (a key's 24 h)

    def now(self) -> datetime:
        """Naive UTC, second precision (what the DATETIME columns hold)."""
        return datetime.fromtimestamp(int(self.clock()), UTC).replace(tzinfo=None)

    async def run(self, *, owner: str, key: str, fingerprint: str, call: Callable[[], Awaitable[Answer]],
                  encode: Callable[[object], bytes]) -> tuple[Answer, bool]:
        """The answer under ``key`` and whether it was replayed."""
        now = self.now()
        if not await self._keys.claim(owner=owner, key=key, request_hash=fingerprint, created_at=now,
                                      expires_at=now + TTL):
            replay = await self._existing(owner=owner, key=key, fingerprint=fingerprint)
            if replay is not None:
                return replay, True
            # It expired (and was dropped) or its runner gave up: claim it afresh.
            if not await self._keys.claim(owner=owner, key=key, request_hash=fingerprint, created_at=now,
                                          expires_at=now + TTL):
                raise Conflict("A request with this Idempotency-Key is in progress", code="idempotency_key_in_use")
        try:
            answer = await call()
        except AppError as exc:
            if exc.status >= 500:
                await self._keys.release(owner=owner, key=key)
                raise
            status, body, _headers = error_body(exc)
            answer = (status, encode(body))
        except BaseException:
            await self._keys.release(owner=owner, key=key)
            raise
        await self._keys.complete(owner=owner, key=key, status=answer[0], body=answer[1])
        return answer, False

    async def _existing(self, *, owner: str, key: str, fingerprint: str) -> Answer | None:
        deadline = asyncio.get_running_loop().time() + self._wait
        while True:
            row = await self._keys.get(owner=owner, key=key)
            if row is None:
                return None
            if row["expires_at"] <= self.now():
                await self._keys.drop_expired(owner=owner, key=key, now=self.now())
                return None
            if row["request_hash"] != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used for another request: use a new key for a new request",
                    details={"header": "Idempotency-Key"},
                )
            if row["state"] == "done":
                return row["response_status"], row["response_body"]
            if row["created_at"] <= self.now() - STALE:
                await self._keys.drop_stale(owner=owner, key=key, created_at=row["created_at"])
                return None
            if asyncio.get_running_loop().time() >= deadline:
                raise Conflict("A request with this Idempotency-Key is in progress", code="idempotency_key_in_use")
            await asyncio.sleep(POLL)

    async def sweep(self) -> int:
        """Remove the keys past their 24 h (the ``idempotency_keys.sweep`` task); returns how many."""
        return await self._keys.sweep(self.now())
