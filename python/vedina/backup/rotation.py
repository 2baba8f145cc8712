"""Which backups to keep: the newest of each of the last N days and of the last M ISO weeks.

Days and weeks count only those that have a backup (as restic's --keep-daily/--keep-weekly):
with keep_daily=7, a week without backups does not use up the seven. A backup kept by either
rule stays; the newest backup is always kept.

>>> from datetime import datetime as d
>>> sorted(x.day for x in kept([d(2026, 1, 1, 3), d(2026, 1, 1, 9), d(2026, 1, 2, 3)], keep_daily=1, keep_weekly=0))
[2]
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

STAMP = "%Y%m%dT%H%M%SZ"


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(STAMP)


def parse_stamp(name: str) -> datetime | None:
    try:
        return datetime.strptime(name, STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def kept(moments: list[datetime], *, keep_daily: int, keep_weekly: int) -> set[datetime]:
    newest_first = sorted(moments, reverse=True)
    keep: set[datetime] = set(newest_first[:1])
    for period, count in ((lambda m: m.date(), keep_daily), (lambda m: m.isocalendar()[:2], keep_weekly)):
        seen: set = set()
        for moment in newest_first:
            if len(seen) >= count:
                break
            if (bucket := period(moment)) not in seen:
                seen.add(bucket)
                keep.add(moment)
    return keep


def backups(root: Path) -> dict[datetime, Path]:
    """The complete backups under ``root`` (directories named by their UTC stamp)."""
    found = {}
    if root.is_dir():
        for path in root.iterdir():
            if path.is_dir() and (moment := parse_stamp(path.name)) is not None and (path / "manifest.json").is_file():
                found[moment] = path
    return found


def rotate(root: Path, *, keep_daily: int, keep_weekly: int) -> list[Path]:
    """Delete the backups the policy does not keep; returns the deleted directories."""
    existing = backups(root)
    keep = kept(list(existing), keep_daily=keep_daily, keep_weekly=keep_weekly)
    deleted = [path for moment, path in sorted(existing.items()) if moment not in keep]
    for path in deleted:
        shutil.rmtree(path)
    return deleted
