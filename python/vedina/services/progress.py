"""Watch progress, coalesced: a player reporting every few seconds is not a database write every few seconds.

The rule, per (profile, movie):

- Every report is kept at once in the shared store (Redis, or the embedded
  key-value table) as the *pending* position; reads (a movie's progress,
  continue watching) prefer it over the database row, so they always see the
  latest report, from any worker or host.
- The database gets at most one position write per ``PROGRESS_FLUSH_SECONDS``:
  a *flush marker* in the shared store (``add``, expiring after the window)
  says a write happened in the current window. A report that finds no marker
  sets it and writes now; one that finds it is remembered by this worker and
  written when the window has passed (the latest pending value, whichever
  worker received it), by a background task that looks every second.
- A report that makes the movie *watched* (position >= 95% of the duration) is
  written at once, as are marking and unmarking a movie watched.
- Stopping a worker writes everything it still holds (``close``), marker or
  not. A worker killed outright loses only the database copy of its last
  window: the pending value stays readable for ``PENDING_TTL`` and the next
  report of that movie writes it.

>>> await writer.report(profile_id=1, movie_id=7, position=300, duration=5400)
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.background import Background
from vedina.storage.clock import now_ms
from vedina.storage.keyvalue import KeyValueStore
from vedina.storage.viewing import ViewingRepository

log = logging.getLogger(__name__)

WATCHED_PERCENT = 95  # a movie played this far counts as watched
PENDING_TTL = 7 * 86400  # seconds the shared store keeps a pending position
FLUSH_TICK = 1.0  # seconds between looks at this worker's due writes


def is_watched(position: int, duration: int) -> bool:
    return position * 100 >= duration * WATCHED_PERCENT


class Pending(msgspec.Struct, array_like=True, frozen=True):
    """The latest report of one (profile, movie)."""

    position: int
    duration: int
    at_ms: int  # when it was reported (epoch milliseconds)
    watched: bool = False  # this report made (or found) the movie watched

    @property
    def at(self) -> datetime:
        """When it was reported (naive UTC, milliseconds: orders reports within one second)."""
        return datetime.fromtimestamp(self.at_ms / 1000, UTC).replace(tzinfo=None, microsecond=self.at_ms % 1000 * 1000)

    @property
    def stored_at(self) -> datetime:
        """The same, to the second (what DATETIME columns hold on both databases)."""
        return self.at.replace(microsecond=0)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Pending).decode


def pending_key(profile_id: int, movie_id: int) -> str:
    return f"progress:{profile_id}:{movie_id}"


def flushed_key(profile_id: int, movie_id: int) -> str:
    return f"progress-flushed:{profile_id}:{movie_id}"


class ProgressWriter:
    def __init__(self, *, engine: AsyncEngine, store: KeyValueStore, flush_seconds: float) -> None:
        self._engine = engine
        self._store = store
        self._flush_seconds = flush_seconds
        self._due: dict[tuple[int, int], float] = {}  # (profile, movie) -> monotonic time to write
        self._latest: dict[tuple[int, int], int] = {}  # (profile, movie) -> at_ms of this worker's latest report
        self._task = Background("progress flush")

    @property
    def held(self) -> int:
        """How many (profile, movie) positions this worker still has to write."""
        return len(self._due)

    async def report(self, *, profile_id: int, movie_id: int, position: int, duration: int) -> Pending:
        slot = (profile_id, movie_id)
        if is_watched(position, duration):
            previous = await self.pending(profile_id, [movie_id])
            if not (movie_id in previous and previous[movie_id].watched):  # it *becomes* watched: write now
                return await self.write_now(profile_id=profile_id, movie_id=movie_id, position=position,
                                            duration=duration, watched=True)
        pending = Pending(position, duration, now_ms(), watched=is_watched(position, duration))
        await self._store.set(pending_key(*slot), _encode(pending), ttl=PENDING_TTL)
        if slot in self._due:
            self._latest[slot] = pending.at_ms
            return pending
        if await self._store.add(flushed_key(*slot), b"1", ttl=self._flush_seconds):
            await self._write(slot, pending)
        else:
            self._due[slot] = time.monotonic() + self._flush_seconds
            self._latest[slot] = pending.at_ms
        return pending

    async def write_now(self, *, profile_id: int, movie_id: int, position: int, duration: int,
                        watched: bool | None) -> Pending:
        """Marking watched (True), unmarking (False: back to 0), or a report that made it watched.

        The pending value is set first: a flush of an older report that runs meanwhile then writes this one."""
        slot = (profile_id, movie_id)
        pending = Pending(position, duration, now_ms(), watched=bool(watched))
        await self._store.set(pending_key(*slot), _encode(pending), ttl=PENDING_TTL)
        self._due.pop(slot, None)
        self._latest.pop(slot, None)
        async with self._engine.begin() as conn:
            if watched is False:
                await ViewingRepository.unmark_watched(conn, profile_id=profile_id, movie_id=movie_id, at=pending.stored_at)
            else:
                await ViewingRepository.save_position(conn, profile_id=profile_id, movie_id=movie_id,
                                                      position=position, duration=duration, at=pending.stored_at,
                                                      watched=bool(watched))
        return pending

    async def pending(self, profile_id: int, movie_ids: list[int]) -> dict[int, Pending]:
        """movie id -> the latest report not known to be in the database (any worker's)."""
        if not movie_ids:
            return {}
        values = await self._store.get_many([pending_key(profile_id, m) for m in movie_ids])
        return {m: _decode(raw) for m, raw in zip(movie_ids, values, strict=True) if raw is not None}

    async def flush(self, *, everything: bool = False) -> int:
        """Write the positions whose window has passed (``everything``: all held, markers or not);
        returns how many were written.

        A slot stays held until its write has committed (a write cancelled at shutdown is done
        again by ``close``), and stays held after it when this worker received a newer report meanwhile."""
        now, written = time.monotonic(), 0
        for slot in [s for s, due in self._due.items() if everything or due <= now]:
            self._due[slot] = now + self._flush_seconds  # the next look, whatever happens below
            if not everything and not await self._store.add(flushed_key(*slot), b"1", ttl=self._flush_seconds):
                continue  # another worker wrote in this window
            raw = await self._store.get(pending_key(*slot))
            pending = None if raw is None else _decode(raw)
            if pending is not None:
                await self._write(slot, pending)
                written += 1
            if pending is None or self._latest.get(slot, 0) <= pending.at_ms:
                self._due.pop(slot, None)
                self._latest.pop(slot, None)
        return written

    async def _write(self, slot: tuple[int, int], pending: Pending) -> None:
        try:
            async with self._engine.begin() as conn:
                await ViewingRepository.save_position(conn, profile_id=slot[0], movie_id=slot[1],
                                                      position=pending.position, duration=pending.duration,
                                                      at=pending.stored_at)
        except IntegrityError:  # the profile or the movie was deleted meanwhile: nothing to keep
            log.info("progress of a deleted profile or movie dropped", extra={"profile_id": slot[0], "movie_id": slot[1]})

    def start(self) -> None:
        self._task.start(self._loop)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_TICK)
            try:
                await self.flush()
            except Exception:
                log.exception("writing watch progress failed")

    async def close(self) -> None:
        await self._task.stop()
        try:
            await self.flush(everything=True)
        except Exception:
            log.exception("writing watch progress at shutdown failed")
