"""MediaService.locate: stored paths are resolved inside MEDIA_ROOT or not at all."""

from __future__ import annotations

import asyncio

import pytest

from vedina.composition import build_services
from vedina.errors import NotFound
from vedina.storage.movies import MovieRepository


@pytest.fixture
async def media(settings, resources, tmp_path):
    root = settings.media_dir
    (root / "films").mkdir(parents=True)
    (root / "films" / "ok.webm").write_bytes(b"\x1aE\xdf\xa3 webm")
    (root / "films" / "folder.mp4").mkdir()
    secret = tmp_path / "outside.mp4"
    secret.write_bytes(b"secret")
    (root / "films" / "escape.mp4").symlink_to(secret)
    (root / "films" / "inside-link.mkv").symlink_to(root / "films" / "ok.webm")
    return build_services(settings, resources).media


async def add_asset(resources, path: str, content_type: str = "application/x-custom") -> int:
    async with resources.engine.begin() as conn:
        movie_id = await MovieRepository.insert(conn, slug=f"m-{abs(hash(path))}", title="t", synopsis="s",
                                                maturity_rating="G", genres=[])
        return await MovieRepository.insert_asset(conn, movie_id=movie_id, kind="video", path=path,
                                                  content_type=content_type)


async def test_a_file_inside_the_root_is_found_with_its_type(media, resources, settings):
    found = await media.locate(asset_id=await add_asset(resources, "films/ok.webm"))
    assert found.path == str(settings.media_dir / "films" / "ok.webm")
    assert found.relative_path == "films/ok.webm"
    assert found.content_type == "video/webm"
    assert found.stat.st_size == 9


async def test_a_symlink_staying_inside_is_served_under_its_target_path(media, resources):
    found = await media.locate(asset_id=await add_asset(resources, "films/inside-link.mkv"))
    assert found.relative_path == "films/ok.webm"


async def test_unknown_extension_falls_back_to_the_stored_type(media, resources, settings):
    (settings.media_dir / "films" / "poster.bin").write_bytes(b"x")
    found = await media.locate(asset_id=await add_asset(resources, "films/poster.bin", "image/jpeg"))
    assert found.content_type == "image/jpeg"


@pytest.mark.parametrize(
    "stored",
    [
        "../../../../etc/passwd",
        "/etc/passwd",
        "films/../../outside.mp4",
        "films/escape.mp4",  # symlink leaving the root
        "films/folder.mp4",  # not a regular file
        "films/missing.mp4",
        "films/ok.webm\r\nx-evil: 1",
        "",
    ],
)
async def test_unsafe_or_missing_paths_are_not_found(media, resources, stored):
    asset_id = await add_asset(resources, stored)
    with pytest.raises(NotFound) as info:
        await media.locate(asset_id=asset_id)
    assert info.value.details == {"id": asset_id}


async def test_unknown_asset_is_not_found(media):
    with pytest.raises(NotFound):
        await media.locate(asset_id=987654321)


async def test_asset_rows_are_cached_until_invalidated_and_files_stated_every_time(resources, settings):
    from vedina.services.media import asset_key

    (settings.media_dir / "a").mkdir(parents=True)
    (settings.media_dir / "a" / "one.mp4").write_bytes(b"1")
    media = build_services(settings, resources).media
    resources.invalidations.start()
    await asyncio.wait_for(resources.invalidations.ready(), 5)
    asset_id = await add_asset(resources, "a/one.mp4")
    assert (await media.locate(asset_id=asset_id)).stat.st_size == 1

    async with resources.engine.begin() as conn:
        await MovieRepository.update_asset(conn, asset_id, path="a/two.mp4")
    (settings.media_dir / "a" / "one.mp4").write_bytes(b"22")
    cached = await media.locate(asset_id=asset_id)
    assert cached.relative_path == "a/one.mp4" and cached.stat.st_size == 2  # row cached, file fresh

    await resources.invalidations.publish(asset_key(asset_id))
    with pytest.raises(NotFound):  # the new row's path does not exist
        await media.locate(asset_id=asset_id)
