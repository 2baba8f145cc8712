"""Media-asset rows for the ingest jobs (``media.probe``, ``media.transcode``).

Typed rows (:class:`MediaAsset`) and the few writes the jobs make: the facts a
probe found, a failure, a rendition saved under its source, and the transcode
*lease* on a source row.

The lease: ``transcode_status = 'running'`` plus ``updated_at`` is a claim on
the source. :meth:`MediaAssetRepository.claim_transcode` takes it with one
compare-and-set UPDATE (so two workers cannot both win, on MariaDB as on
SQLite); the holder refreshes ``updated_at`` while it works; a claim whose
``updated_at`` is older than the lease's ``stale`` window belongs to a worker
that died, and the next claimer takes it over.

>>> assets = MediaAssetRepository(engine)
>>> source = await assets.get(7)
>>> await assets.claim_transcode(asset_id=7, stale=timedelta(seconds=60))
True
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.schema import media_assets as table

RUNNING = "running"


class MediaAsset(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    movie_id: int
    kind: str  # video | rendition | subtitle | poster | sprite
    parent_id: int | None
    path: str  # relative to MEDIA_ROOT
    content_type: str
    size_bytes: int | None
    language: str | None
    label: str | None
    status: str  # pending | ready | failed
    failure_reason: str | None
    container: str | None
    video_codec: str | None
    audio_codec: str | None
    duration_ms: int | None
    width: int | None
    height: int | None
    bitrate: int | None
    checksum_sha256: str | None
    transcode_status: str  # none | queued | running | done | failed
    transcode_progress: int
    created_at: datetime
    updated_at: datetime | None


class MediaFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What a probe of a file found (every field a column of ``media_assets``)."""

    container: str | None
    video_codec: str | None
    audio_codec: str | None
    duration_ms: int | None
    width: int | None
    height: int | None
    bitrate: int | None
    size_bytes: int
    checksum_sha256: str


_COLUMNS = tuple(table.c[name] for name in MediaAsset.__struct_fields__)
_GET = sa.select(*_COLUMNS).where(table.c.id == sa.bindparam("asset_id"))
_CHILD = sa.select(*_COLUMNS).where(
    table.c.parent_id == sa.bindparam("parent_id"),
    table.c.kind == sa.bindparam("kind"),
    table.c.label == sa.bindparam("label"),
).order_by(table.c.id)


def _row(row) -> MediaAsset:
    return MediaAsset(**{name: row[i] for i, name in enumerate(MediaAsset.__struct_fields__)})


def _facts(facts: MediaFacts) -> dict:
    return msgspec.structs.asdict(facts)


class MediaAssetRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, asset_id: int) -> MediaAsset | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_GET, {"asset_id": asset_id})).first()
        return None if row is None else _row(row)

    async def find_child(self, *, parent_id: int, kind: str, label: str) -> MediaAsset | None:
        """The asset made from ``parent_id`` as (kind, label), e.g. ('rendition', '360p')."""
        async with self._engine.connect() as conn:
            return await self._find_child(conn, parent_id=parent_id, kind=kind, label=label)

    async def children(self, parent_id: int) -> list[MediaAsset]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(*_COLUMNS).where(table.c.parent_id == parent_id).order_by(table.c.id))).all()
        return [_row(r) for r in rows]

    @staticmethod
    async def _find_child(conn: AsyncConnection, *, parent_id: int, kind: str, label: str) -> MediaAsset | None:
        row = (await conn.execute(_CHILD, {"parent_id": parent_id, "kind": kind, "label": label})).first()
        return None if row is None else _row(row)

    # -- writes inside the caller's transaction ---------------------------------

    @staticmethod
    async def record_ready(conn: AsyncConnection, *, asset_id: int, facts: MediaFacts) -> None:
        await conn.execute(
            sa.update(table).where(table.c.id == asset_id)
            .values(**_facts(facts), status="ready", failure_reason=None, updated_at=utcnow())
        )

    @staticmethod
    async def record_failed(conn: AsyncConnection, *, asset_id: int, reason: str) -> None:
        await conn.execute(
            sa.update(table).where(table.c.id == asset_id)
            .values(status="failed", failure_reason=reason[:1000], updated_at=utcnow())
        )

    @staticmethod
    async def mark_transcode_queued(conn: AsyncConnection, *, asset_id: int) -> None:
        """'queued', unless a transcode holds the lease (its end state must not be overwritten)."""
        await conn.execute(
            sa.update(table).where(table.c.id == asset_id, table.c.transcode_status != RUNNING)
            .values(transcode_status="queued", transcode_progress=0, updated_at=utcnow())
        )

    @classmethod
    async def save_child(
        cls, conn: AsyncConnection, *, parent: MediaAsset, kind: str, label: str, path: str, content_type: str,
        facts: MediaFacts,
    ) -> int:
        """Insert or update the (parent, kind, label) asset as ready; returns its id."""
        existing = await cls._find_child(conn, parent_id=parent.id, kind=kind, label=label)
        values = dict(_facts(facts), path=path, content_type=content_type, status="ready", failure_reason=None,
                      updated_at=utcnow())
        if existing is not None:
            await conn.execute(sa.update(table).where(table.c.id == existing.id).values(**values))
            return existing.id
        result = await conn.execute(
            sa.insert(table).values(
                movie_id=parent.movie_id, kind=kind, parent_id=parent.id, label=label, created_at=utcnow(),
                transcode_status="none", transcode_progress=0, **values,
            )
        )
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def delete(conn: AsyncConnection, *, asset_id: int) -> None:
        await conn.execute(sa.delete(table).where(table.c.id == asset_id))

    # -- the transcode lease on a source row --------------------------------------

    async def claim_transcode(self, *, asset_id: int, stale: timedelta) -> bool:
        """Take the source's transcode lease: True when this caller now holds it."""
        now = utcnow()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(table)
                .where(
                    table.c.id == asset_id,
                    sa.or_(table.c.transcode_status != RUNNING, table.c.updated_at.is_(None),
                           table.c.updated_at < now - stale),
                )
                .values(transcode_status=RUNNING, failure_reason=None, updated_at=now)
            )
        return result.rowcount == 1

    async def set_transcode(
        self, *, asset_id: int, status: str | None = None, progress: int | None = None,
        failure_reason: str | None = None,
    ) -> None:
        """Progress, heartbeat (no arguments: refreshes the lease) or the end state."""
        values: dict = {"updated_at": utcnow()}
        if status is not None:
            values["transcode_status"] = status
        if progress is not None:
            values["transcode_progress"] = max(0, min(100, progress))
        if failure_reason is not None:
            values["failure_reason"] = failure_reason[:1000]
        async with self._engine.begin() as conn:
            await conn.execute(sa.update(table).where(table.c.id == asset_id).values(**values))
