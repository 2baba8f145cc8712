"""Rows of tus uploads in progress (table ``uploads``): the protocol's state across requests.

The row's ``offset_bytes`` is the truth about how many bytes of the part file
are durable: it only moves by compare-and-set (``WHERE offset_bytes =
:expected``), after the bytes were written and fsync'ed, so of two writers at
one offset exactly one wins, and bytes a crashed writer left past the offset
are junk the next writer truncates. Completion moves the offset to the length
in the same transaction that inserts the media asset and its probe job
(:meth:`UploadRepository.finish`), so "offset == length" means "asset exists".

>>> uploads = UploadRepository(engine)
>>> await uploads.get("9f0c...")                      # Upload or None
>>> await uploads.advance("9f0c...", expected=0, offset=262144)
True
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.schema import movies
from vedina.storage.schema import uploads as table


class Upload(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    owner_id: int
    movie_id: int
    length: int
    offset_bytes: int
    metadata: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    completed_at: datetime | None
    asset_id: int | None


_COLUMNS = tuple(table.c[name] for name in Upload.__struct_fields__)
_GET = sa.select(*_COLUMNS).where(table.c.id == sa.bindparam("upload_id"))


def _row(row) -> Upload:
    return Upload(**dict(zip(Upload.__struct_fields__, row, strict=True)))


class UploadRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, upload_id: str) -> Upload | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_GET, {"upload_id": upload_id})).first()
        return None if row is None else _row(row)

    async def movie_takes_uploads(self, movie_id: int) -> bool:
        """The movie exists and is not deleted."""
        query = sa.select(movies.c.id).where(movies.c.id == movie_id, movies.c.status != "deleted")
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def insert(
        self, *, upload_id: str, owner_id: int, movie_id: int, length: int, metadata: dict[str, Any],
        expires_at: datetime,
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sa.insert(table).values(
                id=upload_id, owner_id=owner_id, movie_id=movie_id, length=length, offset_bytes=0,
                metadata=metadata, created_at=utcnow(), expires_at=expires_at,
            ))

    async def advance(self, upload_id: str, *, expected: int, offset: int) -> bool:
        """Move the offset from ``expected`` to ``offset``; False when it was not at ``expected``."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(table)
                .where(table.c.id == upload_id, table.c.offset_bytes == expected, table.c.completed_at.is_(None))
                .values(offset_bytes=offset)
            )
        return result.rowcount == 1

    @staticmethod
    async def finish(conn: AsyncConnection, upload_id: str, *, expected: int, length: int, asset_id: int) -> bool:
        """In the caller's transaction (the one inserting the asset): offset ``expected`` -> ``length``,
        completed. False when another request moved the offset or completed it first."""
        result = await conn.execute(
            sa.update(table)
            .where(table.c.id == upload_id, table.c.offset_bytes == expected, table.c.completed_at.is_(None))
            .values(offset_bytes=length, completed_at=utcnow(), asset_id=asset_id)
        )
        return result.rowcount == 1

    async def delete(self, upload_id: str, *, completed: bool) -> bool:
        """Delete the row if it is still as complete as the caller saw it (False: gone or changed):
        which files go with it depends on that, and a completion may commit in between."""
        done = table.c.completed_at.is_not(None) if completed else table.c.completed_at.is_(None)
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(table).where(table.c.id == upload_id, done))
        return result.rowcount == 1

    async def expired(self, *, now: datetime, limit: int) -> list[Upload]:
        """Uploads whose ``expires_at`` has passed (finished or not), oldest first."""
        query = sa.select(*_COLUMNS).where(table.c.expires_at < now).order_by(table.c.expires_at).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_row(r) for r in rows]

    async def delete_expired(self, upload_id: str, *, now: datetime, completed: bool) -> bool:
        """Delete the row if it is still expired and as complete as the caller saw it."""
        done = table.c.completed_at.is_not(None) if completed else table.c.completed_at.is_(None)
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(table).where(table.c.id == upload_id, table.c.expires_at < now, done))
        return result.rowcount == 1
