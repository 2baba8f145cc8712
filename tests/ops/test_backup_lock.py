"""A restore and a backup never overlap in one BACKUP_DIR: a backup rotates old backups away and prunes
media-store objects, which would pull files from under a restore. They share `BACKUP_DIR/.lock`: a
backup holds it exclusively, restores hold it shared. Nobody waits: a restore started while a backup
runs is REFUSED (exit 1, "a backup is running ... retry"), before it creates or writes anything; a
backup started while a restore runs is refused the same way; restores may run side by side."""

from __future__ import annotations

import errno
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.ops.backup_helpers import cleanup, database_exists, scratch_target
from vedina.backup import BackupError, create_backup, jobs, media, restore_backup
from vedina.config import Settings


async def target_exists(settings: Settings, target: str) -> bool:
    if settings.storage_profile == "real":
        return await database_exists(settings, target)
    return Path(target).exists()


def paused(monkeypatch, owner, name: str) -> tuple[threading.Event, threading.Event]:
    """Make ``owner.name`` stop until released: (entered, release)."""
    entered, release = threading.Event(), threading.Event()
    original = getattr(owner, name)

    def wait_then_run(*args, **kwargs):
        entered.set()
        assert release.wait(60), "never released"
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wait_then_run)
    return entered, release


async def test_a_restore_is_refused_while_a_backup_runs_and_writes_nothing(settings, tmp_path, monkeypatch):
    root = tmp_path / "backups"
    (settings.media_dir / "a.jpg").parent.mkdir(parents=True, exist_ok=True)
    (settings.media_dir / "a.jpg").write_bytes(b"a")
    first = create_backup(settings, dest=str(root))
    entered, release = paused(monkeypatch, media, "snapshot")  # the next backup stops mid-way
    target, media_target = scratch_target(settings, tmp_path, "locked"), tmp_path / "media-restored"
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(create_backup, settings, dest=str(root))
            try:
                assert entered.wait(30)
                with pytest.raises(BackupError, match=r"a backup is running in .*retry the restore when it has finished"):
                    restore_backup(settings, first.path, into=target, media_into=str(media_target))
                assert not await target_exists(settings, target) and not media_target.exists()
            finally:
                release.set()
            second = running.result(timeout=120)
        # What the lock prevented: the second backup of the day rotated the first one away.
        assert not first.path.exists()
        restored = restore_backup(settings, second.path, into=target, media_into=str(media_target))
        assert restored.media_written == 1 and (media_target / "a.jpg").read_bytes() == b"a"
    finally:
        await cleanup(settings, target)


async def test_a_backup_is_refused_while_a_restore_runs_but_a_second_restore_is_not(settings, tmp_path, monkeypatch):
    root = tmp_path / "backups"
    done = create_backup(settings, dest=str(root))
    before = sorted(p.name for p in root.iterdir())
    entered, release = paused(monkeypatch, jobs, "verify")  # the restore holds the lock, stopped
    slow, quick = scratch_target(settings, tmp_path, "slow"), scratch_target(settings, tmp_path, "quick")
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(restore_backup, settings, done.path, into=slow)
            try:
                assert entered.wait(30)
                with pytest.raises(BackupError, match="another backup or a restore is running"):
                    create_backup(settings, dest=str(root))
                assert sorted(p.name for p in root.iterdir()) == before  # no partial backup, nothing rotated
                monkeypatch.undo()  # the next restore goes straight through, beside the paused one
                assert restore_backup(settings, done.path, into=quick).target == quick
            finally:
                release.set()
            assert running.result(timeout=120).target == slow
        assert create_backup(settings, dest=str(root)).path.is_dir()  # lock released
    finally:
        await cleanup(settings, slow, quick)


def test_a_restore_from_a_read_only_copy_without_a_lock_file_is_not_refused(tmp_path, monkeypatch):
    original = os.open

    def read_only_filesystem(path, flags, *args, **kwargs):
        if str(path).endswith(f"/{jobs.LOCK}") and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return original(path, flags, *args, **kwargs)

    monkeypatch.setattr(jobs.os, "open", read_only_filesystem)
    with jobs._locked(tmp_path, shared=True):
        pass
    with pytest.raises(BackupError, match="cannot open the lock file"):  # a backup needs the lock
        with jobs._locked(tmp_path, shared=False):
            pass
