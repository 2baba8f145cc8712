"""Media files by an rsync-style manifest: only new or changed files are copied.

Each backup's ``media.json`` lists every file under the media directory with its size,
mtime (ns) and sha256. A file whose size and mtime equal the previous backup's entry keeps
that entry's sha256 without being read again; any other file is read once, hashed while it
is copied into the shared store ``BACKUP_DIR/media-store/<sha[:2]>/<sha>`` (content
addressed: identical bytes are stored once, whichever backup or path they came from).
Paths present in the previous backup and gone now are listed under ``deleted``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

import msgspec

from vedina.backup.archive import CHUNK, BackupError, CorruptBackup, atomic_file, sha256_file

STORE = "media-store"
MEDIA_MANIFEST = "media.json"


class MediaFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: str  # relative, POSIX separators
    size: int
    mtime_ns: int
    sha256: str


class MediaManifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    files: list[MediaFile] = []
    deleted: list[str] = []  # in the previous backup, gone now
    copied: list[str] = []  # paths whose bytes this backup added to the store
    hashed: list[str] = []  # paths read and hashed (new, or size/mtime changed)


def object_path(store: Path, sha256: str) -> Path:
    return store / sha256[:2] / sha256


def snapshot(media_dir: Path, store: Path, previous: MediaManifest | None) -> MediaManifest:
    known = {entry.path: entry for entry in (previous.files if previous else [])}
    manifest = MediaManifest()
    for path in _regular_files(media_dir):
        relative = path.relative_to(media_dir).as_posix()
        stat = path.stat()
        before = known.get(relative)
        if (before is not None and before.size == stat.st_size and before.mtime_ns == stat.st_mtime_ns
                and object_path(store, before.sha256).is_file()):
            manifest.files.append(before)
            continue
        sha256, size, added = _copy_into_store(path, store)
        manifest.hashed.append(relative)
        if added:
            manifest.copied.append(relative)
        manifest.files.append(MediaFile(path=relative, size=size, mtime_ns=stat.st_mtime_ns, sha256=sha256))
    present = {entry.path for entry in manifest.files}
    manifest.deleted = sorted(set(known) - present)
    return manifest


def restore(manifest: MediaManifest, store: Path, into: Path, *, replace_allowed: bool) -> int:
    """Write every file of ``manifest`` under ``into`` (checked against its sha256, mtime set).
    Files already there with the right bytes are left alone; returns the number written."""
    if into.exists() and any(into.iterdir()) and not replace_allowed:
        raise BackupError(f"{into} is not empty: restore media into a new directory (--media-into)")
    written = 0
    for entry in manifest.files:
        relative = PurePosixPath(entry.path)
        if relative.is_absolute() or ".." in relative.parts:
            raise CorruptBackup(f"media manifest names a path outside the media directory: {entry.path!r}")
        target = into.joinpath(*relative.parts)
        if target.is_file() and target.stat().st_size == entry.size and sha256_file(target) == entry.sha256:
            continue
        source = object_path(store, entry.sha256)
        if not source.is_file():
            raise CorruptBackup(f"media file {entry.path} ({entry.sha256}) is missing from {store}")
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with atomic_file(target) as out, open(source, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != entry.sha256:
                raise CorruptBackup(f"stored copy of media file {entry.path} is corrupted")
        os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))
        written += 1
    return written


def referenced_objects(manifests: list[MediaManifest]) -> set[str]:
    return {entry.sha256 for manifest in manifests for entry in manifest.files}


def prune_store(store: Path, keep: set[str]) -> int:
    """Remove stored objects no kept backup references; returns how many."""
    removed = 0
    if store.is_dir():
        for path in store.glob("??/*"):
            if path.name not in keep:
                path.unlink()
                removed += 1
    return removed


def _regular_files(root: Path) -> list[Path]:
    found: list[Path] = []
    if root.is_dir():
        for directory, _dirs, names in os.walk(root):
            found.extend(p for name in names if (p := Path(directory, name)).is_file() and not p.is_symlink())
    return sorted(found)


def _copy_into_store(path: Path, store: Path) -> tuple[str, int, bool]:
    """Copy ``path`` into the store, hashing as it goes; (sha256, size, whether it was new)."""
    store.mkdir(parents=True, exist_ok=True)
    temporary = store / f".incoming-{os.getpid()}"
    digest, size = hashlib.sha256(), 0
    with atomic_file(temporary) as out, open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    sha256 = digest.hexdigest()
    target = object_path(store, sha256)
    if target.is_file():
        temporary.unlink()
        return sha256, size, False
    target.parent.mkdir(exist_ok=True)
    temporary.replace(target)
    return sha256, size, True

