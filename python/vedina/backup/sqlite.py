"""The embedded profile: SQLite's online backup API to a consistent copy, and its restore.

``sqlite3.Connection.backup`` copies the database page by page and restarts if a writer
changes it meanwhile, so the copy is one consistent state even while the app writes (WAL).
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from vedina.backup.archive import BackupError, atomic_file, compress_stream, decompress_chunks
from vedina.backup.manifest import Artifact


def sqlite_file(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite+aiosqlite:///"))


def dump(source: Path, target: Path) -> Artifact:
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        copy = Path(scratch) / "copy.sqlite3"
        _backup(source, copy)
        with open(copy, "rb") as handle:
            compressed = compress_stream(handle, target)
    return Artifact(file=target.name, sha256=compressed.sha256, size=compressed.size,
                    uncompressed_size=compressed.uncompressed_size)


def restore(dump_path: Path, *, into: Path, replace_allowed: bool) -> None:
    """Write the backed-up database to ``into``: a new file (atomically), or with
    ``replace_allowed`` over an existing one through the backup API (safe for open readers)."""
    if into.exists() and not replace_allowed:
        raise BackupError(f"{into} already exists: remove it or restore to another path (--into)")
    into.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=into.parent) as scratch:
        copy = Path(scratch) / "restored.sqlite3"
        with atomic_file(copy) as handle:
            for chunk in decompress_chunks(dump_path):
                handle.write(chunk)
        _check_integrity(copy)
        if into.exists():
            _backup(copy, into)
        else:
            copy.replace(into)


def _backup(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
    finally:
        dst.close()
        src.close()


def _check_integrity(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the restored SQLite file is not a database: {exc}") from None
    finally:
        conn.close()
    if verdict != "ok":
        raise BackupError(f"the restored SQLite file fails its integrity check: {verdict}")
