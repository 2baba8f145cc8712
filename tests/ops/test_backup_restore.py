"""`vedina backup` then `vedina restore` on both profiles: the restored copy equals the database
at backup time, table by table (row count and checksum), and holds none of the later writes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import VEDINA
from tests.ops.backup_helpers import cleanup, database_exists, fingerprints, on_database, scratch_target
from vedina.backup import BackupError, create_backup, restore_backup
from vedina.composition import open_services
from vedina.config import Settings
from vedina.services.catalog_editor import MovieCreate
from vedina.storage.database import create_engine
from vedina.storage.schema import users


async def write(settings: Settings, tag: str) -> None:
    """An account and a draft movie, through the services as the app writes them."""
    services = await open_services(settings)
    try:
        await services.accounts.register(email=f"{tag}@example.org", password="correct horse battery staple",
                                         display_name=tag)
        await services.catalog_editor.create(MovieCreate(title=f"Movie {tag}"))
    finally:
        await services.close()


async def emails(settings: Settings) -> list[str]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.select(users.c.email).order_by(users.c.email))).scalars())
    finally:
        await engine.dispose()


async def test_restore_brings_back_every_table_as_it_was_at_backup_time(settings, tmp_path):
    media = settings.media_dir
    (media / "posters").mkdir(parents=True, exist_ok=True)
    (media / "posters" / "one.jpg").write_bytes(os.urandom(50_000))
    await write(settings, "before")
    at_backup = await fingerprints(settings)
    done = create_backup(settings, dest=str(tmp_path / "backups"))
    await write(settings, "after")
    assert await fingerprints(settings) != at_backup  # the later writes changed tables
    target = scratch_target(settings, tmp_path, "tables")
    try:
        restored = restore_backup(settings, done.path, into=target, media_into=str(tmp_path / "media-restored"))
        assert restored.target == target
        restored_settings = on_database(settings, target)
        assert await fingerprints(restored_settings) == at_backup
        assert "users" in at_backup and "movies" in at_backup and at_backup["users"][0] == 1
        assert await emails(restored_settings) == ["before@example.org"]
        assert (tmp_path / "media-restored" / "posters" / "one.jpg").read_bytes() == \
            (media / "posters" / "one.jpg").read_bytes()
    finally:
        await cleanup(settings, target)
    if settings.storage_profile == "real":
        assert done.manifest.binlog is not None and done.manifest.binlog.file.startswith("vedina-bin.")


async def test_restore_never_writes_over_the_live_database_unless_asked(settings, tmp_path):
    done = create_backup(settings, dest=str(tmp_path / "backups"))
    live = settings.db_name if settings.storage_profile == "real" else str(sa.make_url(settings.database_url).database)
    before = await fingerprints(settings)
    with pytest.raises(BackupError, match="refusing to restore over the live"):
        restore_backup(settings, done.path, into=live)
    with pytest.raises(BackupError, match="refusing to restore over the live media"):
        restore_backup(settings, done.path, into=scratch_target(settings, tmp_path, "media"),
                       media_into=str(settings.media_dir))
    await cleanup(settings, scratch_target(settings, tmp_path, "media"))
    assert await fingerprints(settings) == before


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {"DATA_DIR": settings.data_dir, "LOG_LEVEL": "warning", "PATH": os.environ["PATH"]}
    if settings.storage_profile == "real":
        env.update(DB_HOST=settings.db_host, DB_PORT=str(settings.db_port), DB_NAME=settings.db_name,
                   DB_USER=settings.db_user, DB_PASSWORD=settings.db_password)
    return subprocess.run([VEDINA, *args], env=env, capture_output=True, text=True, timeout=120)


async def test_a_corrupted_backup_is_refused_and_nothing_is_restored(settings, tmp_path):
    made = cli(settings, "backup", "--dest", str(tmp_path / "backups"))
    assert made.returncode == 0, made.stderr
    backup = next(p for p in (tmp_path / "backups").iterdir() if p.name[:1].isdigit())
    dump = next(backup.glob("database.*.gz"))
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    target = scratch_target(settings, tmp_path, "corrupt")
    refused = cli(settings, "restore", str(backup), "--into", target)
    assert refused.returncode == 3
    assert "refusing to restore a corrupted backup" in refused.stderr and dump.name in refused.stderr
    if settings.storage_profile == "real":
        assert not await database_exists(settings, target)
    else:
        assert not Path(target).exists()


async def test_a_restore_refuses_a_target_that_already_has_data(settings, tmp_path):
    done = create_backup(settings, dest=str(tmp_path / "backups"))
    target = scratch_target(settings, tmp_path, "twice")
    try:
        restore_backup(settings, done.path, into=target)
        with pytest.raises(BackupError, match="already"):
            restore_backup(settings, done.path, into=target)
    finally:
        await cleanup(settings, target)


async def test_overwrite_live_puts_the_live_database_back_as_it_was(settings, tmp_path):
    await write(settings, "kept")
    at_backup = await fingerprints(settings)
    done = create_backup(settings, dest=str(tmp_path / "backups"))
    await write(settings, "undone")
    live = settings.db_name if settings.storage_profile == "real" else str(sa.make_url(settings.database_url).database)
    restore_backup(settings, done.path, into=live, overwrite_live=True)
    assert await fingerprints(settings) == at_backup
    assert await emails(settings) == ["kept@example.org"]
