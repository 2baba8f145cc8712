"""Streaming compression with a running sha256, atomic files, and checksum checks.

Nothing is held in memory: bytes flow in ``CHUNK``-sized pieces from a producer (a
``mariadb-dump`` pipe, a file) through gzip into a temporary file that is renamed into place
only once complete and flushed to disk.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024


class BackupError(Exception):
    """A backup or restore cannot go on; the message says why (printed by the CLI)."""


class CorruptBackup(BackupError):
    """A file of the backup does not match the sha256 its manifest records."""


class _HashingWriter:
    """A write-only file wrapper that counts and hashes what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class Compressed:
    """Result of ``compress_stream``: the compressed file's sha256 and size, and the input size."""

    def __init__(self, sha256: str, size: int, uncompressed_size: int) -> None:
        self.sha256, self.size, self.uncompressed_size = sha256, size, uncompressed_size


def compress_stream(source: BinaryIO, target: Path, *, first_chunk_hook=None) -> Compressed:
    """gzip ``source`` into ``target`` atomically; ``first_chunk_hook(bytes)`` sees the first chunk."""
    uncompressed = 0
    with atomic_file(target) as raw:
        hashing = _HashingWriter(raw)
        with gzip.GzipFile(fileobj=hashing, mode="wb", compresslevel=6, mtime=0) as zipped:
            while chunk := source.read(CHUNK):
                if first_chunk_hook is not None and uncompressed == 0:
                    first_chunk_hook(chunk)
                uncompressed += len(chunk)
                zipped.write(chunk)
    return Compressed(hashing.sha256.hexdigest(), hashing.size, uncompressed)


def decompress_chunks(path: Path) -> Iterator[bytes]:
    with gzip.open(path, "rb") as zipped:
        while chunk := zipped.read(CHUNK):
            yield chunk


@contextmanager
def atomic_file(target: Path) -> Iterator[BinaryIO]:
    """Write to ``<target>.part``, fsync, then rename over ``target``; removed on error."""
    partial = target.with_name(target.name + ".part")
    try:
        with open(partial, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise CorruptBackup unless ``path`` exists and hashes to ``expected``."""
    if not path.is_file():
        raise CorruptBackup(f"{path} is missing")
    actual = sha256_file(path)
    if actual != expected:
        raise CorruptBackup(f"{path} is corrupted: its sha256 is {actual}, the manifest records {expected}")
