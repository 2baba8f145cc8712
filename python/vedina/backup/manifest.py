"""``manifest.json``: what one backup holds, written last, read and verified first.

>>> m = Manifest(created="2026-01-02T03:04:05Z", profile="embedded", database="/srv/vedina.sqlite3",
...              dump=Artifact(file="database.sqlite3.gz", sha256="0" * 64, size=1, uncompressed_size=2))
>>> decode_manifest(encode_manifest(m)) == m
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from vedina.backup.archive import BackupError, atomic_file, verify_sha256

FORMAT = 1
MANIFEST = "manifest.json"


class Artifact(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    file: str  # relative to the backup directory
    sha256: str  # of the file as stored (compressed)
    size: int
    uncompressed_size: int = 0


class BinlogPosition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    file: str  # e.g. vedina-bin.000012
    position: int  # replay starts here: the dump's snapshot holds everything before it


class Manifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    created: str  # ISO 8601, UTC
    profile: Literal["real", "embedded"]
    database: str  # MariaDB database name, or the SQLite file that was copied
    dump: Artifact
    format: int = FORMAT
    binlog: BinlogPosition | None = None  # real profile with log_bin ON
    media: Artifact | None = None  # media.json
    media_files: int = 0
    media_bytes: int = 0
    tools: dict[str, str] = {}


def encode_manifest(manifest: Manifest) -> bytes:
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"


def decode_manifest(data: bytes) -> Manifest:
    return msgspec.json.decode(data, type=Manifest)


def write_manifest(directory: Path, manifest: Manifest) -> None:
    with atomic_file(directory / MANIFEST) as handle:
        handle.write(encode_manifest(manifest))


def backup_directory(path: Path) -> Path:
    """A backup given as its directory or as its manifest.json."""
    return path.parent if path.name == MANIFEST else path


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    try:
        manifest = decode_manifest(path.read_bytes())
    except FileNotFoundError:
        raise BackupError(f"{directory} is not a backup: {MANIFEST} is missing") from None
    except msgspec.ValidationError as exc:
        raise BackupError(f"{path} is not a valid backup manifest: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BackupError(f"{path} is corrupted: {exc}") from None
    if manifest.format != FORMAT:
        raise BackupError(f"{path} has format {manifest.format}; this version reads format {FORMAT}")
    return manifest


def verify(directory: Path, manifest: Manifest) -> None:
    """Every file the manifest names hashes to its recorded sha256 (else CorruptBackup)."""
    for artifact in (manifest.dump, manifest.media):
        if artifact is not None:
            verify_sha256(directory / artifact.file, artifact.sha256)
