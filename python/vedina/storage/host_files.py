"""Files that the processes of one host share for one deployment (one database).

Servers, ``vedina worker`` and CLI commands that use the same database on the
same host find the same files: shared-memory tables under ``/dev/shm`` (or
``DATA_DIR`` where there is none) and lock files.

>>> host_file(settings, "gen")        # e.g. /dev/shm/vedina-gen-3f2a9c0d1e4b5a69
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vedina.config import Settings

SHM = Path("/dev/shm")


def host_file(settings: Settings, name: str) -> Path:
    digest = hashlib.sha256(f"{settings.database_url}|{Path(settings.data_dir).resolve()}".encode()).hexdigest()[:16]
    filename = f"vedina-{name}-{digest}"
    return SHM / filename if SHM.is_dir() else Path(settings.data_dir, f"{filename}.shm")
