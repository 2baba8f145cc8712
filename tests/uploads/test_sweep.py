"""The periodic sweep removes expired uploads (rows and part files), on both profiles."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from vedina.composition import build_services
from vedina.storage.clock import utcnow
from vedina.storage.movies import MovieRepository
from vedina.storage.schema import media_assets, uploads, users


async def _owner_and_movie(engine) -> tuple[int, int]:
    async with engine.begin() as conn:
        now = utcnow()
        owner = (await conn.execute(sa.insert(users).values(
            email="sweep@example.org", display_name="Sweeper", role="editor", status="active",
            created_at=now, updated_at=now,
        ))).inserted_primary_key[0]
        movie = await MovieRepository.insert(
            conn, slug="sweep", title="Sweep", sort_title="sweep", genres=[], spoken_languages=[],
            subtitle_languages=[], status="published", published_at=now,
        )
    return int(owner), movie


async def _expire(engine, upload_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.update(uploads).where(uploads.c.id == upload_id).values(expires_at=datetime(2000, 1, 1)))


async def test_the_sweep_removes_expired_uploads_and_their_part_files_only(settings, resources):
    services = build_services(settings, resources)
    service, engine = services.uploads, resources.engine
    owner, movie = await _owner_and_movie(engine)
    meta = {"movie_id": str(movie), "filename": "clip.mp4"}

    stale = await service.create(owner_id=owner, length=10, metadata=meta)
    await service.append(upload_id=stale.id, owner_id=owner, offset=0, data=b"12345", checksum=None)
    # A final link left by a completion that never committed goes with it.
    stray = settings.media_dir / service.final_relative_path(stale)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"12345")
    live = await service.create(owner_id=owner, length=10, metadata=meta)
    done = await service.create(owner_id=owner, length=3, metadata=meta)
    done = await service.append(upload_id=done.id, owner_id=owner, offset=0, data=b"abc", checksum=None)
    for upload in (stale, done):
        await _expire(engine, upload.id)

    assert await service.sweep() == 2

    async with engine.connect() as conn:
        left = set((await conn.execute(sa.select(uploads.c.id))).scalars())
        asset_path = (await conn.execute(sa.select(media_assets.c.path).where(media_assets.c.id == done.asset_id))).scalar_one()
    assert left == {live.id}
    assert not service.part_path(stale.id).exists() and not stray.exists()
    assert service.part_path(live.id).exists()
    assert (settings.media_dir / asset_path).read_bytes() == b"abc"  # the asset an upload made stays
    assert await service.sweep() == 0



async def test_a_sweep_that_read_an_upload_before_it_finished_leaves_the_finished_file(settings, resources):
    """The sweep (or a DELETE) read the row unfinished; the last chunk commits before its delete:
    the delete no longer matches, and the file that is now an asset's stays."""
    services = build_services(settings, resources)
    service, engine = services.uploads, resources.engine
    owner, movie = await _owner_and_movie(engine)
    upload = await service.create(owner_id=owner, length=3, metadata={"movie_id": str(movie), "filename": "c.mp4"})
    await _expire(engine, upload.id)
    stale = (await service._uploads.expired(now=utcnow(), limit=10))[0]
    assert stale.completed_at is None
    async with engine.begin() as conn:  # the completion, committed in between
        await conn.execute(sa.update(uploads).where(uploads.c.id == upload.id).values(completed_at=utcnow()))
    final = settings.media_dir / service.final_relative_path(stale)
    final.parent.mkdir(parents=True, exist_ok=True)
    final.write_bytes(b"abc")

    original = service._uploads.expired

    async def stale_read(**kwargs):
        return [stale]

    service._uploads.expired = stale_read
    try:
        assert await service.sweep() == 0
    finally:
        service._uploads.expired = original
    assert final.read_bytes() == b"abc"
    assert await service.sweep() == 1, "read again, it goes as the finished upload it is"
    assert final.read_bytes() == b"abc"
