"""Files that the processes of one host share: shared-memory tables and lock files.

Servers, ``vedina worker`` and CLI commands that use the same database on the
same host find the same files. They live in a directory private to the user
that runs Vedina, ``/dev/shm/vedina-<uid>`` (mode 0700), so another local user
can neither read them nor stop Vedina from starting by creating a file with
the expected name first: if that directory exists but is not ours (or is open
to others), the files go under ``DATA_DIR`` instead, which the operator owns.

>>> host_file(settings, "gen")        # e.g. /dev/shm/vedina-0/gen-3f2a9c0d1e4b5a69
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

from vedina.config import Settings

log = logging.getLogger(__name__)

SHM = Path("/dev/shm")


def private_dir(data_dir: str) -> Path:
    """``/dev/shm/vedina-<uid>`` when it is (or can be made) ours alone, else ``DATA_DIR``."""
    if SHM.is_dir():
        candidate = SHM / f"vedina-{os.geteuid()}"
        try:
            candidate.mkdir(mode=0o700, exist_ok=True)
            info = os.lstat(candidate)
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and info.st_mode & 0o077 == 0:
                return candidate
            log.warning("shared-memory directory not private: using DATA_DIR", extra={"path": str(candidate)})
        except OSError as exc:
            log.warning("shared-memory directory unusable: using DATA_DIR", extra={"error": str(exc)[:200]})
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def host_file(settings: Settings, name: str) -> Path:
    """The host's file ``name`` for this deployment (database and DATA_DIR)."""
    digest = hashlib.sha256(f"{settings.database_url}|{Path(settings.data_dir).resolve()}".encode()).hexdigest()[:16]
    return private_dir(settings.data_dir) / f"{name}-{digest}.shm"
