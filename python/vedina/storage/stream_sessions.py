"""Playback sessions per account, and the concurrent-stream limit, enforced atomically.

One protocol, two implementations, chosen like the shared store
(:mod:`vedina.storage.keyvalue`):

- :class:`RedisStreamSessions` (real profile): per account a sorted set
  ``streams:{uid}`` (member: session id, score: expiry in unix ms) and a hash
  ``streams:{uid}:s`` (session id -> JSON record, ``d:<device>`` -> session id).
  Opening is one Lua script: drop expired members, reuse the device's live
  session, else add only while fewer than ``limit`` are live. Redis runs a
  script alone, so no two opens on any worker or host can both take the last
  slot.
- :class:`SqlStreamSessions` (embedded profile): rows of ``kv_entries``
  (``streams:<uid>:<sid>``, expiry in ``expires_at``). Opening is one
  transaction whose first statement writes the account's lock row
  (``streams-lock:<uid>``): on SQLite that write takes the database's write
  lock, on MariaDB the row lock, so the count-then-insert that follows is
  serialised per account. A device reopening the movie it plays within
  :data:`REFRESH_SLACK_MS` of its last refresh gets its session back from a plain
  read (SQLite has one writer: a player asking twice must not queue behind it);
  its expiry then moves at the next open or heartbeat.

Time is the caller's (``now_ms``), so expiry is testable; every host is assumed
NTP-synchronised (a skew of s milliseconds moves a session's end by s).

>>> outcome = await sessions.open(candidate, limit=2, now_ms=now_ms())
>>> outcome.session is None   # the limit was reached: outcome.active lists the live ones
False
"""

from __future__ import annotations

from typing import Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.storage.schema import kv_entries

# An account's keys outlive its last session by this long (ms), then vanish.
_IDLE_KEY_MS = 24 * 3600 * 1000
# A session refreshed this recently (ms) is reused as it is by its device (embedded store).
REFRESH_SLACK_MS = 5_000


class StreamSession(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    user_id: int
    movie_id: int
    device_id: str
    device: str  # label: the client's device name or its User-Agent
    started_at: int  # unix ms
    expires_at: int = 0  # unix ms; a heartbeat moves it


class OpenOutcome(msgspec.Struct, frozen=True, kw_only=True):
    session: StreamSession | None  # None: the limit was reached
    reused: bool = False  # the device's live session, (now) for this movie
    previous_movie_id: int | None = None  # of a reused session, before this open
    active: list[StreamSession] = []  # when refused: the live sessions


class StreamSessions(Protocol):
    async def open(self, candidate: StreamSession, *, limit: int, now_ms: int) -> OpenOutcome:
        """Reuse the live session of ``candidate.device_id``, else add ``candidate`` if
        fewer than ``limit`` are live, else refuse, listing them; all in one atomic step."""
        ...

    async def heartbeat(self, *, user_id: int, session_id: str, expires_at: int, now_ms: int) -> StreamSession | None:
        """Move a live session's expiry; None when it is unknown, another account's or over."""
        ...

    async def end(self, *, user_id: int, session_id: str, now_ms: int) -> bool: ...

    async def active(self, *, user_id: int, now_ms: int) -> list[StreamSession]: ...

    async def count_live(self, *, now_ms: int) -> int:
        """Live sessions of every account (a gauge's value; a scan, run by one process)."""
        ...

    async def expiry(self, *, user_id: int, session_id: str, now_ms: int) -> int | None:
        """The session's expiry (unix ms) if it is live: one read, the media hot path's."""
        ...


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(StreamSession).decode


def _record(session: StreamSession) -> bytes:
    return _encode(msgspec.structs.replace(session, expires_at=0))


# -- Redis ------------------------------------------------------------------------------

# KEYS: zset, hash. ARGV: now, expiry, sid, device, record, limit, idle ttl, movie id.
# Returns {2, record} opened, {1, old record, new record} reused, {0, record, score, ...} full.
_OPEN = """
local zset, data = KEYS[1], KEYS[2]
local now, expiry, limit = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[6])
local dead = redis.call('ZRANGEBYSCORE', zset, '-inf', now)
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', zset, '-inf', now)
  redis.call('HDEL', data, unpack(dead))
end
local existing = redis.call('HGET', data, 'd:' .. ARGV[4])
if existing and redis.call('ZSCORE', zset, existing) then
  local old = redis.call('HGET', data, existing)
  local record = cjson.decode(old)
  record['movie_id'] = tonumber(ARGV[8])
  local new = cjson.encode(record)
  redis.call('ZADD', zset, expiry, existing)
  redis.call('HSET', data, existing, new)
  redis.call('PEXPIRE', zset, ARGV[7])
  redis.call('PEXPIRE', data, ARGV[7])
  return {1, old, new}
end
if redis.call('ZCARD', zset) >= limit then
  local live = redis.call('ZRANGE', zset, 0, -1, 'WITHSCORES')
  local out = {0}
  for i = 1, #live, 2 do
    out[#out + 1] = redis.call('HGET', data, live[i]) or ''
    out[#out + 1] = live[i + 1]
  end
  return out
end
redis.call('ZADD', zset, expiry, ARGV[3])
redis.call('HSET', data, ARGV[3], ARGV[5], 'd:' .. ARGV[4], ARGV[3])
redis.call('PEXPIRE', zset, ARGV[7])
redis.call('PEXPIRE', data, ARGV[7])
return {2, ARGV[5]}
"""

# KEYS: zset, hash. ARGV: now, new expiry, sid, idle ttl. Returns the record, or false.
_HEARTBEAT = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not score or tonumber(score) <= tonumber(ARGV[1]) then return false end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return redis.call('HGET', KEYS[2], ARGV[3])
"""

# KEYS: zset, hash. ARGV: now, sid. 1 when a live session was ended.
_END = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
if score and tonumber(score) > tonumber(ARGV[1]) then return 1 end
return 0
"""


class RedisStreamSessions:
    def __init__(self, client, *, prefix: str = "vedina:") -> None:  # client: redis.asyncio.Redis
        self._redis = client
        self._prefix = prefix
        self._open = client.register_script(_OPEN)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._end = client.register_script(_END)

    def _keys(self, user_id: int) -> list[str]:
        # One hash tag per account: both keys live on one Redis Cluster slot.
        zset = f"{self._prefix}streams:{{{user_id}}}"
        return [zset, zset + ":s"]

    async def open(self, candidate: StreamSession, *, limit: int, now_ms: int) -> OpenOutcome:
        reply = await self._open(
            keys=self._keys(candidate.user_id),
            args=[now_ms, candidate.expires_at, candidate.id, candidate.device_id, _record(candidate), limit,
                  _IDLE_KEY_MS, candidate.movie_id],
        )
        kind = int(reply[0])
        if kind == 2:
            return OpenOutcome(session=candidate)
        if kind == 1:
            old, new = _decode(reply[1]), _decode(reply[2])
            return OpenOutcome(session=msgspec.structs.replace(new, expires_at=candidate.expires_at), reused=True,
                               previous_movie_id=old.movie_id)
        pairs = zip(reply[1::2], reply[2::2], strict=True)
        active = [msgspec.structs.replace(_decode(r), expires_at=int(float(score))) for r, score in pairs if r]
        return OpenOutcome(session=None, active=sorted(active, key=lambda s: s.started_at))

    async def heartbeat(self, *, user_id: int, session_id: str, expires_at: int, now_ms: int) -> StreamSession | None:
        record = await self._heartbeat(keys=self._keys(user_id), args=[now_ms, expires_at, session_id, _IDLE_KEY_MS])
        return None if not record else msgspec.structs.replace(_decode(record), expires_at=expires_at)

    async def end(self, *, user_id: int, session_id: str, now_ms: int) -> bool:
        return bool(await self._end(keys=self._keys(user_id), args=[now_ms, session_id]))

    async def active(self, *, user_id: int, now_ms: int) -> list[StreamSession]:
        zset, data = self._keys(user_id)
        live = await self._redis.zrangebyscore(zset, f"({now_ms}", "+inf", withscores=True)
        if not live:
            return []
        records = await self._redis.hmget(data, [sid for sid, _ in live])
        sessions = [msgspec.structs.replace(_decode(r), expires_at=int(score))
                    for (_, score), r in zip(live, records, strict=True) if r]
        return sorted(sessions, key=lambda s: s.started_at)

    async def expiry(self, *, user_id: int, session_id: str, now_ms: int) -> int | None:
        score = await self._redis.zscore(self._keys(user_id)[0], session_id)
        return int(score) if score is not None and score > now_ms else None

    async def count_live(self, *, now_ms: int) -> int:
        # SCAN (never KEYS: it does not block Redis) over the accounts' sorted sets; glob
        # treats braces literally, and the pattern's closing brace skips the ":s" hashes.
        total, batch = 0, []
        async for key in self._redis.scan_iter(match=f"{self._prefix}streams:{{*}}", count=1000, _type="zset"):
            batch.append(key)
            if len(batch) >= 500:
                total += await self._count(batch, now_ms)
                batch = []
        return total + (await self._count(batch, now_ms) if batch else 0)

    async def _count(self, keys: list, now_ms: int) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zcount(key, f"({now_ms}", "+inf")
            return sum(await pipe.execute())


# -- SQL (the embedded shared store's table) ---------------------------------------------


def _prefix(user_id: int) -> str:
    return f"streams:{user_id}:"


def _user_rows(user_id: int):
    # A key range, not LIKE: an index range scan on both databases (';' follows ':').
    return sa.and_(kv_entries.c.key >= _prefix(user_id), kv_entries.c.key < f"streams:{user_id};")


class SqlStreamSessions:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def open(self, candidate: StreamSession, *, limit: int, now_ms: int) -> OpenOutcome:
        fresh = await self._fresh(candidate, now_ms=now_ms)
        if fresh is not None:
            return OpenOutcome(session=fresh, reused=True, previous_movie_id=fresh.movie_id)
        for _ in range(3):  # a lost race to create the account's lock row is retried
            try:
                return await self._open(candidate, limit=limit, now_ms=now_ms)
            except IntegrityError:
                continue
        raise RuntimeError("could not take the stream-session lock row")

    async def _fresh(self, candidate: StreamSession, *, now_ms: int) -> StreamSession | None:
        """The device's live session on the same movie if it was refreshed moments ago (a read)."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(kv_entries.c.value, kv_entries.c.expires_at)
                .where(_user_rows(candidate.user_id), kv_entries.c.expires_at > now_ms)
            )).all()
        for value, expires in rows:
            session = msgspec.structs.replace(_decode(value), expires_at=expires)
            if (session.device_id == candidate.device_id and session.movie_id == candidate.movie_id
                    and expires >= candidate.expires_at - REFRESH_SLACK_MS):
                return session
        return None

    async def _open(self, candidate: StreamSession, *, limit: int, now_ms: int) -> OpenOutcome:
        lock = f"streams-lock:{candidate.user_id}"
        async with self._engine.begin() as conn:
            # First statement a write: serialises this account's opens (see the module docstring).
            taken = await conn.execute(
                sa.update(kv_entries).where(kv_entries.c.key == lock)
                .values(value=str(now_ms).encode(), expires_at=now_ms + _IDLE_KEY_MS)
            )
            if taken.rowcount == 0:
                await conn.execute(sa.insert(kv_entries).values(key=lock, value=b"", expires_at=now_ms + _IDLE_KEY_MS))
            await conn.execute(sa.delete(kv_entries).where(_user_rows(candidate.user_id),
                                                           kv_entries.c.expires_at <= now_ms))
            rows = (await conn.execute(
                sa.select(kv_entries.c.key, kv_entries.c.value, kv_entries.c.expires_at)
                .where(_user_rows(candidate.user_id)).order_by(kv_entries.c.key)
            )).all()
            live = [msgspec.structs.replace(_decode(value), expires_at=expires) for _, value, expires in rows]
            same_device = next((s for s in live if s.device_id == candidate.device_id), None)
            if same_device is not None:
                session = msgspec.structs.replace(same_device, movie_id=candidate.movie_id,
                                                  expires_at=candidate.expires_at)
                await conn.execute(
                    sa.update(kv_entries).where(kv_entries.c.key == _prefix(session.user_id) + session.id)
                    .values(value=_record(session), expires_at=session.expires_at)
                )
                return OpenOutcome(session=session, reused=True, previous_movie_id=same_device.movie_id)
            if len(live) >= limit:
                return OpenOutcome(session=None, active=sorted(live, key=lambda s: s.started_at))
            await conn.execute(sa.insert(kv_entries).values(
                key=_prefix(candidate.user_id) + candidate.id, value=_record(candidate),
                expires_at=candidate.expires_at,
            ))
            return OpenOutcome(session=candidate)

    async def heartbeat(self, *, user_id: int, session_id: str, expires_at: int, now_ms: int) -> StreamSession | None:
        key = _prefix(user_id) + session_id
        async with self._engine.begin() as conn:
            moved = await conn.execute(
                sa.update(kv_entries).where(kv_entries.c.key == key, kv_entries.c.expires_at > now_ms)
                .values(expires_at=expires_at)
            )
            if moved.rowcount == 0:
                return None
            value = (await conn.execute(sa.select(kv_entries.c.value).where(kv_entries.c.key == key))).scalar_one()
        return msgspec.structs.replace(_decode(value), expires_at=expires_at)

    async def end(self, *, user_id: int, session_id: str, now_ms: int) -> bool:
        async with self._engine.begin() as conn:
            ended = await conn.execute(
                sa.delete(kv_entries).where(kv_entries.c.key == _prefix(user_id) + session_id,
                                            kv_entries.c.expires_at > now_ms)
            )
        return ended.rowcount > 0

    async def active(self, *, user_id: int, now_ms: int) -> list[StreamSession]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(kv_entries.c.value, kv_entries.c.expires_at)
                .where(_user_rows(user_id), kv_entries.c.expires_at > now_ms)
            )).all()
        sessions = [msgspec.structs.replace(_decode(value), expires_at=expires) for value, expires in rows]
        return sorted(sessions, key=lambda s: s.started_at)

    async def expiry(self, *, user_id: int, session_id: str, now_ms: int) -> int | None:
        async with self._engine.connect() as conn:
            return (await conn.execute(
                sa.select(kv_entries.c.expires_at)
                .where(kv_entries.c.key == _prefix(user_id) + session_id, kv_entries.c.expires_at > now_ms)
            )).scalar_one_or_none()

    async def count_live(self, *, now_ms: int) -> int:
        # Every account's rows: "streams:" up to "streams;" (the lock rows, "streams-lock:", sort before).
        async with self._engine.connect() as conn:
            return (await conn.execute(
                sa.select(sa.func.count()).select_from(kv_entries)
                .where(kv_entries.c.key >= "streams:", kv_entries.c.key < "streams;", kv_entries.c.expires_at > now_ms)
            )).scalar_one()


def stream_sessions(resources) -> StreamSessions:
    """Redis when the profile has it, else the database the shared store uses."""
    if resources.redis is not None:
        return RedisStreamSessions(resources.redis)
    return SqlStreamSessions(resources.engine)
