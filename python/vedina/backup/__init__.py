"""Backups and restore (``vedina backup``, ``vedina restore``).

One backup is a directory ``BACKUP_DIR/<UTC stamp>/`` written under a temporary name and
renamed when complete, holding:

- ``database.sql.gz`` (real profile: ``mariadb-dump --single-transaction`` with the binary-log
  position of its snapshot) or ``database.sqlite3.gz`` (embedded: SQLite's online backup API);
- ``media.json``: every media file (path, size, mtime, sha256), the files deleted since the
  previous backup; the bytes live once in the shared ``BACKUP_DIR/media-store/`` by sha256,
  so a backup copies only new or changed files;
- ``manifest.json``: what was backed up, when, with which tools, and the sha256 of the two
  files above. Restore verifies them before touching anything.

Modules: ``archive`` (streaming compression, hashing, atomic files), ``manifest``,
``mariadb_client`` (credentials in an option file, never on a command line), ``mariadb``,
``sqlite``, ``media``, ``rotation`` (keep N daily, M weekly), ``jobs`` (the two commands).
"""

from vedina.backup.archive import BackupError, CorruptBackup
from vedina.backup.jobs import create_backup, restore_backup

__all__ = ["BackupError", "CorruptBackup", "create_backup", "restore_backup"]
