"""``vedina backup`` and ``vedina restore``: call the job, print a summary, map errors to exit codes.

Exit codes: 0 done, 1 refused or failed (the message says why), 3 the backup is corrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vedina.backup.archive import BackupError, CorruptBackup
from vedina.backup.jobs import create_backup, restore_backup
from vedina.config import Settings


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.command == "backup":
            done = create_backup(settings, dest=args.dest)
            position = f", binlog {done.manifest.binlog.file}:{done.manifest.binlog.position}" if done.manifest.binlog else ""
            print(f"backup {done.path} ({done.manifest.dump.size} bytes{position}; media: "
                  f"{done.manifest.media_files} files, {len(done.media.copied)} copied, "
                  f"{len(done.media.deleted)} deleted; rotated out: {len(done.rotated)})")
        else:
            done = restore_backup(settings, Path(args.backup), into=args.into, until=args.until,
                                  media_into=args.media_into, overwrite_live=args.overwrite_live)
            replayed = f", {done.replayed} binlog statements replayed" if args.until else ""
            media = f", {done.media_written} media files written to {args.media_into}" if args.media_into else ""
            print(f"restored {args.backup} into {done.target}{replayed}{media}")
    except CorruptBackup as exc:
        print(f"vedina: refusing to restore a corrupted backup: {exc}", file=sys.stderr)
        return 3
    except BackupError as exc:
        print(f"vedina: {args.command} failed: {exc}", file=sys.stderr)
        return 1
    return 0
