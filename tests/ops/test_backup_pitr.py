"""Point-in-time restore (real profile): the dump, then the binary log replayed from the position
the backup recorded up to a timestamp between two writes: the first is there, the second is not."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.ops.backup_helpers import drop_database, fingerprints, on_database
from tests.ops.test_backup_restore import emails, write
from vedina.backup import BackupError, create_backup, restore_backup
from vedina.storage.database import create_engine


async def last_gtid_sequence(settings) -> int:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            position = (await conn.exec_driver_sql("SELECT @@gtid_binlog_pos")).scalar_one()
    finally:
        await engine.dispose()
    return max(int(gtid.rsplit("-", 1)[1]) for gtid in position.split(","))


def sleep_past_next_second() -> datetime:
    """Sleep into the next whole second; return that second (binlog events carry whole seconds)."""
    now = time.time()
    time.sleep(int(now) + 1 - now + 0.05)
    return datetime.fromtimestamp(int(now) + 1, UTC)


@pytest.mark.parametrize("profile", ["real"], indirect=True)
async def test_point_in_time_restore_keeps_the_write_before_the_time_and_not_the_one_after(settings, tmp_path):
    await write(settings, "at-backup")
    done = create_backup(settings, dest=str(tmp_path / "backups"))
    await write(settings, "first")
    until = sleep_past_next_second()  # "first" was written in an earlier second
    time.sleep(1.0)
    await write(settings, "second")  # a later second than `until`
    target = f"{settings.db_name}_restore_pitr"
    sequence_before = await last_gtid_sequence(settings)
    try:
        restored = restore_backup(settings, done.path, into=target, until=until.isoformat())
        assert restored.replayed > 0
        # Replayed transactions are logged with new GTIDs, not their old (out of order) ones.
        assert await last_gtid_sequence(settings) > sequence_before
        restored_settings = on_database(settings, target)
        assert await emails(restored_settings) == ["at-backup@example.org", "first@example.org"]
        tables = await fingerprints(restored_settings)
        assert tables["movies"][0] == 2 and tables["users"][0] == 2
    finally:
        await drop_database(settings, target)


@pytest.mark.parametrize("profile", ["real"], indirect=True)
async def test_until_before_the_backup_was_taken_is_refused(settings, tmp_path):
    done = create_backup(settings, dest=str(tmp_path / "backups"))
    with pytest.raises(BackupError, match="before the backup was taken"):
        restore_backup(settings, done.path, into=f"{settings.db_name}_restore_early", until="2001-01-01T00:00:00Z")
    with pytest.raises(BackupError, match="ISO 8601"):
        restore_backup(settings, done.path, into=f"{settings.db_name}_restore_early", until="yesterday")


@pytest.mark.parametrize("profile", ["embedded"], indirect=True)
async def test_until_is_refused_on_the_embedded_profile(settings, tmp_path):
    done = create_backup(settings, dest=str(tmp_path / "backups"))
    with pytest.raises(BackupError, match="needs the real profile"):
        restore_backup(settings, done.path, into=str(tmp_path / "x.sqlite3"), until=datetime.now(UTC).isoformat())
    assert not (tmp_path / "x.sqlite3").exists()
