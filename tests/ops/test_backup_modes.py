"""Everything `vedina backup` writes is private to the user running it, whatever its umask: backup
directories (and BACKUP_DIR itself when the backup creates it) 0700, files 0600. A dump holds password
hashes and tokens; media-store objects are the catalogue's unreleased files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vedina.backup import create_backup
from vedina.backup.media import STORE, object_path


def modes(root: Path) -> dict[str, int]:
    return {path.relative_to(root.parent).as_posix(): stat.S_IMODE(path.lstat().st_mode)
            for path in [root, *root.rglob("*")]}


async def test_every_directory_a_backup_writes_is_0700_and_every_file_0600_under_a_loose_umask(settings, tmp_path):
    media = settings.media_dir
    (media / "posters").mkdir(parents=True, exist_ok=True)
    (media / "posters" / "one.jpg").write_bytes(b"poster one")
    root = tmp_path / "backups" / "vedina"  # the backup creates both levels
    previous = os.umask(0o022)  # a typical login umask: 0755 directories, 0644 files
    try:
        create_backup(settings, dest=str(root))
        (media / "two.jpg").write_bytes(b"poster two")  # the second backup adds to the existing store
        second = create_backup(settings, dest=str(root))
        assert os.umask(0o022) == 0o022  # the process umask is back as it was
    finally:
        os.umask(previous)
    found = modes(tmp_path / "backups")
    directories = {name for name in found if (tmp_path / name).is_dir()}
    files = set(found) - directories
    assert {name: mode for name, mode in found.items() if mode != (0o700 if name in directories else 0o600)} == {}
    stamp = second.path.name
    dump = "database.sql.gz" if settings.storage_profile == "real" else "database.sqlite3.gz"
    store = root / STORE
    assert {f"backups/vedina/{stamp}/{name}" for name in (dump, "media.json", "manifest.json")} <= files
    assert {f"backups/vedina/{stamp}", "backups/vedina", "backups", f"backups/vedina/{STORE}"} <= directories
    assert "backups/vedina/.lock" in files
    for entry in second.media.files:  # both media objects, and the directories they sit in
        stored = object_path(store, entry.sha256)
        assert found[stored.relative_to(tmp_path).as_posix()] == 0o600
        assert found[stored.parent.relative_to(tmp_path).as_posix()] == 0o700
    assert len(second.media.files) == 2 and not [name for name in files if name.endswith(".part")]
