"""Tiny clips made with ffmpeg, assets inserted as rows, and MP4 box reading for the media-job tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import sqlalchemy as sa

from vedina.storage.clock import utcnow
from vedina.storage.schema import media_assets, movies, outbox


def make_clip(target: Path, *, width: int, height: int, seconds: float = 2, audio: bool = True, video: bool = True) -> Path:
    """testsrc + a sine tone, H.264/AAC, moov last (so the jobs' fast-start is theirs)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
    if video:
        command += ["-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate=12"]
    if audio:
        command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    command += ["-t", str(seconds)]
    if video:
        command += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        command += ["-c:a", "aac", "-b:a", "48k"]
    subprocess.run([*command, str(target)], check=True)
    return target


def place(clip: Path, media_dir: Path, relative: str) -> Path:
    target = media_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip, target)
    return target


async def add_video(engine, *, path: str, slug: str = "clip", kind: str = "video") -> tuple[int, int]:
    """A movie and its source asset row (as an upload or the demo loader leaves them): (movie id, asset id)."""
    now = utcnow()
    async with engine.begin() as conn:
        movie_id = (await conn.execute(sa.insert(movies).values(
            slug=slug, title=slug.title(), genres=[], spoken_languages=[], subtitle_languages=[],
            created_at=now, updated_at=now,
        ))).inserted_primary_key[0]
        asset_id = (await conn.execute(sa.insert(media_assets).values(
            movie_id=movie_id, kind=kind, path=path, content_type="video/mp4", status="pending", created_at=now,
        ))).inserted_primary_key[0]
    return int(movie_id), int(asset_id)


async def asset_row(engine, asset_id: int) -> dict | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(media_assets).where(media_assets.c.id == asset_id))).mappings().first()
    return None if row is None else dict(row)


async def children(engine, parent_id: int) -> dict[tuple[str, str], dict]:
    async with engine.connect() as conn:
        rows = (await conn.execute(
            sa.select(media_assets).where(media_assets.c.parent_id == parent_id).order_by(media_assets.c.id)
        )).mappings().all()
    found = {(r["kind"], r["label"]): dict(r) for r in rows}
    assert len(found) == len(rows), "duplicate (kind, label) rows"
    return found


async def outbox_rows(engine) -> list[dict]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox.c.topic, outbox.c.payload).order_by(outbox.c.id))).mappings().all()
    return [dict(r) for r in rows]


async def movie_duration(engine, movie_id: int) -> int | None:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(movies.c.duration_seconds).where(movies.c.id == movie_id))).scalar_one()


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order (ISO BMFF: 32-bit size, type; size 1 = 64-bit size follows)."""
    boxes, offset, end = [], 0, path.stat().st_size
    with open(path, "rb") as file:
        while offset < end:
            file.seek(offset)
            header = file.read(16)
            size, kind = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:
                size = end - offset
            assert size >= 8, f"bad box size at {offset}"
            boxes.append(kind)
            offset += size
    return boxes


def ffprobe_streams(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True, capture_output=True,
    ).stdout
    info = json.loads(out)
    return {s["codec_type"]: s["codec_name"] for s in info["streams"]} | {"format": info["format"]["format_name"]}


def image_size(path: Path) -> tuple[int, int]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)], check=True, capture_output=True
    ).stdout
    stream = json.loads(out)["streams"][0]
    return stream["width"], stream["height"]
