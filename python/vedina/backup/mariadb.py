"""The real profile: a consistent dump with its binary-log position, its load, and binlog replay.

Consistency: ``--single-transaction`` dumps InnoDB tables from one REPEATABLE READ snapshot;
with ``--master-data=2`` MariaDB's dump reads the snapshot's binlog coordinates from the
``binlog_snapshot_file``/``binlog_snapshot_position`` status (no FLUSH TABLES WITH READ LOCK,
hence no RELOAD privilege) and writes them as a commented ``CHANGE MASTER`` line, parsed here.

Point in time: events from that position up to ``--stop-datetime`` are read from the server
(``mariadb-binlog --read-from-remote-server``, privilege REPLICATION SLAVE) and applied with the
``mariadb`` client (BINLOG REPLAY). ``--database`` keeps only the source database's events and
``--rewrite-db`` points them at the scratch database. The ``SET gtid_seq_no`` lines are dropped
so the replayed transactions get fresh GTIDs instead of re-logging old ones out of order.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from vedina.backup.archive import BackupError, compress_stream, decompress_chunks
from vedina.backup.manifest import Artifact, BinlogPosition
from vedina.backup.mariadb_client import checked_name, option_file, query, tool, version
from vedina.config import Settings

_POSITION = re.compile(rb"CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+)")
# "/*!100001 SET ...*/" or, from 10.11.8 on, "/*M!100001 SET ...*/"
_GTID_SEQ_NO = re.compile(rb"^/\*M?!\d+ SET @@session\.gtid_seq_no=\d+\*//\*!\*/;\s*$")


def tool_versions() -> dict[str, str]:
    return {name: version(name) for name in ("mariadb-dump", "mariadb", "mariadb-binlog")}


def dump(settings: Settings, target: Path) -> tuple[Artifact, BinlogPosition | None]:
    """``mariadb-dump`` of DB_NAME, gzipped into ``target``; the binlog position if log_bin is ON."""
    database = checked_name(settings.db_name)
    found: list[BinlogPosition] = []

    def read_position(first_chunk: bytes) -> None:
        if match := _POSITION.search(first_chunk):
            found.append(BinlogPosition(file=match[1].decode(), position=int(match[2])))

    with option_file(settings) as options, tempfile.TemporaryFile() as errors:
        log_bin = query(options, "SELECT @@log_bin") == [["1"]]
        args = [tool("mariadb-dump"), f"--defaults-extra-file={options}", "--single-transaction", "--routines",
                "--triggers", "--events", "--hex-blob", "--default-character-set=utf8mb4"]
        if log_bin:
            args.append("--master-data=2")
        process = subprocess.Popen([*args, database], stdout=subprocess.PIPE, stderr=errors)
        try:
            compressed = compress_stream(process.stdout, target, first_chunk_hook=read_position)
        finally:
            process.stdout.close()
            process.wait()
        if process.returncode != 0:
            target.unlink(missing_ok=True)
            raise _failed("mariadb-dump", process.returncode, errors)
    if log_bin and not found:
        target.unlink(missing_ok=True)
        raise BackupError("mariadb-dump wrote no binary-log position although log_bin is ON")
    artifact = Artifact(file=target.name, sha256=compressed.sha256, size=compressed.size,
                        uncompressed_size=compressed.uncompressed_size)
    return artifact, (found[0] if found else None)


def prepare_target(settings: Settings, *, into: str, replace_allowed: bool) -> None:
    """Create ``into``; refuse one that already holds tables unless ``replace_allowed``."""
    checked_name(into, what="--into")
    with option_file(settings) as options:
        tables = query(options, "SELECT COUNT(*) FROM information_schema.tables "
                                          f"WHERE table_schema = '{into}'")
        if tables != [["0"]] and not replace_allowed:
            raise BackupError(f"database {into} already has tables: drop it or restore into another (--into)")
        query(options, f"CREATE DATABASE IF NOT EXISTS `{into}` "
                                 "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")


def load(settings: Settings, dump_path: Path, *, into: str) -> None:
    """Stream the gunzipped dump into the ``mariadb`` client connected to ``into``."""
    with option_file(settings) as options, tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([tool("mariadb"), f"--defaults-extra-file={options}", checked_name(into)],
                                   stdin=subprocess.PIPE, stderr=errors)
        try:
            for chunk in decompress_chunks(dump_path):
                process.stdin.write(chunk)
            process.stdin.close()
        except BrokenPipeError:
            pass  # the client stopped: its exit code and message say why
        if process.wait() != 0:
            raise _failed("mariadb (loading the dump)", process.returncode, errors)


def replay(settings: Settings, *, start: BinlogPosition, source: str, into: str, stop_datetime: str) -> int:
    """Apply ``source``'s binlog events from ``start`` up to (excluding) ``stop_datetime`` (server
    local time, 'YYYY-MM-DD HH:MM:SS') to ``into``; returns the number of statements applied."""
    args = ["--read-from-remote-server", f"--start-position={start.position}", f"--stop-datetime={stop_datetime}",
            "--to-last-log", f"--database={checked_name(source)}"]
    if into != source:
        args.append(f"--rewrite-db={source}->{checked_name(into, what='--into')}")
    applied = 0
    with option_file(settings) as options, tempfile.TemporaryFile() as read_errors, \
            tempfile.TemporaryFile() as apply_errors:
        reader = subprocess.Popen([tool("mariadb-binlog"), f"--defaults-extra-file={options}", *args, start.file],
                                  stdout=subprocess.PIPE, stderr=read_errors)
        applier = subprocess.Popen([tool("mariadb"), f"--defaults-extra-file={options}", into],
                                   stdin=subprocess.PIPE, stderr=apply_errors)
        try:
            for line in reader.stdout:
                if _GTID_SEQ_NO.match(line):
                    continue
                applied += line.startswith(b"BINLOG '") or line.startswith(b"COMMIT")
                applier.stdin.write(line)
            applier.stdin.close()
        except BrokenPipeError:
            reader.kill()
        finally:
            reader.stdout.close()
            reader.wait()
            applier.wait()
        if reader.returncode != 0:
            raise _failed("mariadb-binlog", reader.returncode, read_errors)
        if applier.returncode != 0:
            raise _failed("mariadb (replaying the binlog)", applier.returncode, apply_errors)
    return applied


def _failed(name: str, code: int, errors) -> BackupError:
    errors.seek(0)
    message = errors.read().decode(errors="replace").strip()[-2000:]
    return BackupError(f"{name} exited with {code}: {message}")
