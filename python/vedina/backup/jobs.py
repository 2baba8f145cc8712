"""The two commands: ``create_backup`` (dump + media + manifest, then rotation) and
``restore_backup`` (verify, then restore into a scratch database, file or directory).

Restores never touch the live database, SQLite file or media directory unless asked with
``overwrite_live=True`` (``--overwrite-live``): by default the target is a scratch one.

Everything a backup writes is private to the user running it (directories 0700, files 0600:
a dump holds password hashes and tokens). ``BACKUP_DIR/.lock`` keeps a backup (exclusive: it
rotates backups and prunes the media store) and restores (shared: they read both) apart; neither
waits: whichever comes second is refused with a message saying what holds the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from vedina.backup import mariadb, media, rotation
from vedina.backup import sqlite as sqlite_backup
from vedina.backup.archive import BackupError, atomic_file, sha256_file
from vedina.backup.manifest import Artifact, Manifest, backup_directory, read_manifest, verify, write_manifest
from vedina.config import Settings
from vedina.storage.durable import fsync_path


def backup_root(settings: Settings, dest: str | None = None) -> Path:
    return Path(dest or settings.backup_dir or Path(settings.data_dir) / "backups").resolve()


@dataclass
class BackupResult:
    path: Path
    manifest: Manifest
    media: media.MediaManifest
    rotated: list[Path]


@dataclass
class RestoreResult:
    target: str  # database name or SQLite path
    replayed: int = 0  # binlog statements applied (--until)
    media_written: int = 0


def create_backup(settings: Settings, *, dest: str | None = None) -> BackupResult:
    with _private_files():
        return _create_backup(settings, backup_root(settings, dest))


def _create_backup(settings: Settings, root: Path) -> BackupResult:
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root, shared=False):
        moment = datetime.now(UTC)
        while (root / rotation.stamp(moment)).exists():  # one backup per second: names are stamps
            time.sleep(0.2)
            moment = datetime.now(UTC)
        name = rotation.stamp(moment)
        work = root / f".{name}.partial"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            manifest, media_manifest = _write_backup(settings, root, work, moment)
            fsync_path(work)
            work.rename(root / name)
            fsync_path(root)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        rotated = rotation.rotate(root, keep_daily=settings.backup_keep_daily, keep_weekly=settings.backup_keep_weekly)
        kept = [_read_media(path) for path in rotation.backups(root).values()]
        media.prune_store(root / media.STORE, media.referenced_objects(kept))
    return BackupResult(root / name, manifest, media_manifest, rotated)


def _write_backup(settings: Settings, root: Path, work: Path, moment: datetime) -> tuple[Manifest, media.MediaManifest]:
    tools = {"python": platform.python_version()}
    binlog = None
    if settings.storage_profile == "real":
        dump, binlog = mariadb.dump(settings, work / "database.sql.gz")
        tools.update(mariadb.tool_versions())
        database = settings.db_name
    else:
        source = sqlite_backup.sqlite_file(settings.database_url)
        dump = sqlite_backup.dump(source, work / "database.sqlite3.gz")
        tools["sqlite"] = sqlite3.sqlite_version
        database = str(source)
    latest = max(rotation.backups(root).items(), default=None)
    media_manifest = media.snapshot(settings.media_dir, root / media.STORE, _read_media(latest[1]) if latest else None)
    media_path = work / media.MEDIA_MANIFEST
    with atomic_file(media_path) as handle:
        handle.write(msgspec.json.encode(media_manifest))
    manifest = Manifest(
        created=moment.isoformat(timespec="seconds").replace("+00:00", "Z"), profile=settings.storage_profile,
        database=database, dump=dump, binlog=binlog, tools=tools,
        media=Artifact(file=media_path.name, sha256=sha256_file(media_path), size=media_path.stat().st_size),
        media_files=len(media_manifest.files), media_bytes=sum(entry.size for entry in media_manifest.files),
    )
    write_manifest(work, manifest)
    return manifest, media_manifest


def restore_backup(settings: Settings, backup: Path, *, into: str | None = None, until: str | None = None,
                   media_into: str | None = None, overwrite_live: bool = False) -> RestoreResult:
    directory = backup_directory(Path(backup).resolve())
    # Shared: restores may run side by side, but no backup may rotate this one away or prune the
    # media store under it.
    with _locked(directory.parent, shared=True):
        return _restore(settings, directory, into=into, until=until, media_into=media_into,
                        overwrite_live=overwrite_live)


def _restore(settings: Settings, directory: Path, *, into: str | None, until: str | None, media_into: str | None,
             overwrite_live: bool) -> RestoreResult:
    manifest = read_manifest(directory)
    verify(directory, manifest)  # before anything is created or written
    if manifest.profile != settings.storage_profile:
        raise BackupError(f"this is a {manifest.profile}-profile backup but the settings select the "
                          f"{settings.storage_profile} profile")
    stop = _stop_datetime(until, manifest) if until else None
    dump_path = directory / manifest.dump.file
    if manifest.profile == "real":
        target = into or f"{manifest.database}_restore"
        live = target == settings.db_name
        _refuse_live(live, overwrite_live, f"the live database {target}")
        mariadb.prepare_target(settings, into=target, replace_allowed=live)
        mariadb.load(settings, dump_path, into=target)
        result = RestoreResult(target)
        if stop is not None:
            result.replayed = mariadb.replay(settings, start=manifest.binlog, source=manifest.database, into=target,
                                             stop_datetime=stop)
    else:
        path = Path(into or Path(settings.data_dir) / "restore" / f"{directory.name}.sqlite3").resolve()
        live = path == sqlite_backup.sqlite_file(settings.database_url)
        _refuse_live(live, overwrite_live, f"the live SQLite file {path}")
        sqlite_backup.restore(dump_path, into=path, replace_allowed=live)
        result = RestoreResult(str(path))
    if media_into:
        media_target = Path(media_into).resolve()
        live = media_target == settings.media_dir
        _refuse_live(live, overwrite_live, f"the live media directory {media_target}")
        result.media_written = media.restore(_read_media(directory), directory.parent / media.STORE, media_target,
                                             replace_allowed=live)
    return result


def _refuse_live(live: bool, overwrite_live: bool, what: str) -> None:
    if live and not overwrite_live:
        raise BackupError(f"refusing to restore over {what}: restore into a scratch target (--into, --media-into) "
                          "or pass --overwrite-live")


def _stop_datetime(until: str, manifest: Manifest) -> str:
    """--until as mariadb-binlog's --stop-datetime: local time, whole seconds."""
    if manifest.profile != "real":
        raise BackupError("--until needs the real profile's binary log: an embedded backup restores as it was taken")
    if manifest.binlog is None:
        raise BackupError("--until: this backup recorded no binary-log position (log_bin was OFF when it was taken)")
    try:
        moment = datetime.fromisoformat(until)
    except ValueError:
        raise BackupError(f"--until must be an ISO 8601 time such as 2026-01-31T14:05:00Z, got {until!r}") from None
    moment = moment.astimezone()  # a naive time is local time; either way now in local time
    if moment < datetime.fromisoformat(manifest.created):
        raise BackupError(f"--until {until} is before the backup was taken ({manifest.created}): use an older backup")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _read_media(directory: Path) -> media.MediaManifest:
    try:
        return msgspec.json.decode((directory / media.MEDIA_MANIFEST).read_bytes(), type=media.MediaManifest)
    except (OSError, msgspec.DecodeError) as exc:
        raise BackupError(f"cannot read {directory / media.MEDIA_MANIFEST}: {exc}") from None


@contextmanager
def _private_files() -> Iterator[None]:
    """umask 077 for the whole backup: every directory it creates is 0700, every file 0600
    (the dump, manifests, media-store objects, the lock file, the client tools' temporary files)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


LOCK = ".lock"


@contextmanager
def _locked(root: Path, *, shared: bool) -> Iterator[None]:
    """flock ``root/.lock``: exclusive for a backup, shared for a restore; never waits."""
    try:
        # Opened read-only and never truncated (flock needs no write access): a restore also works
        # from a read-only copy of BACKUP_DIR, and as another user (root) than the backups' owner.
        # 0644 & umask: 0600 under a backup, readable by the backups' owner if a root restore made it.
        fd = os.open(root / LOCK, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if not (shared and exc.errno in (errno.EROFS, errno.ENOENT)):
            raise BackupError(f"cannot open the lock file {root / LOCK}: {exc.strerror}") from None
        fd = None  # a read-only copy without a lock file, or no such directory: no backup runs there
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                if shared:
                    raise BackupError(f"a backup is running in {root} (it rotates backups and prunes the media "
                                      "store): retry the restore when it has finished") from None
                raise BackupError(f"another backup or a restore is running in {root}") from None
        yield
    finally:
        if fd is not None:
            os.close(fd)
