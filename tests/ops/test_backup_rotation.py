"""Rotation keeps the newest backup of each of the last N days and of the last M ISO weeks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from vedina.backup.media import STORE, MediaFile, MediaManifest, object_path, prune_store, referenced_objects
from vedina.backup.rotation import backups, kept, rotate, stamp


def at(day: int, hour: int = 3) -> datetime:
    return datetime(2026, 3, 1, hour, tzinfo=UTC) + timedelta(days=day - 1)  # 2026-03-01 is a Sunday


def test_keeps_the_newest_backup_of_each_recent_day_and_week():
    # Two backups a day for 30 days (March 1st to 30th).
    moments = [at(day, hour) for day in range(1, 31) for hour in (3, 15)]
    keep = kept(moments, keep_daily=3, keep_weekly=2)
    daily = {at(30, 15), at(29, 15), at(28, 15)}
    # ISO weeks: Mon 23 - Sun 29 (newest: the 29th, kept as daily) and Mon 30 (the 30th, same).
    assert keep == daily
    keep = kept(moments, keep_daily=2, keep_weekly=4)
    # weeks ending Sun 29, 22, 15 and the week of Mon 30: newest of each.
    assert keep == {at(30, 15), at(29, 15), at(22, 15), at(15, 15)}


def test_days_without_backups_do_not_use_up_the_daily_count():
    moments = [at(1), at(5), at(9), at(9, 20)]
    assert kept(moments, keep_daily=3, keep_weekly=0) == {at(9, 20), at(5), at(1)}


def test_the_newest_backup_is_always_kept():
    assert kept([at(1), at(2)], keep_daily=1, keep_weekly=0) == {at(2)}
    assert kept([], keep_daily=1, keep_weekly=1) == set()


def test_rotate_deletes_backups_it_does_not_keep_and_their_media_objects(tmp_path):
    store = tmp_path / STORE
    manifests = {}
    for day in (1, 2, 3):
        directory = tmp_path / stamp(at(day))
        directory.mkdir()
        (directory / "manifest.json").write_text("{}")
        sha = f"{day:064x}"
        object_path(store, sha).parent.mkdir(parents=True, exist_ok=True)
        object_path(store, sha).write_bytes(b"x")
        manifests[day] = MediaManifest(files=[MediaFile(path=f"f{day}", size=1, mtime_ns=0, sha256=sha)])
        (directory / "media.json").write_bytes(msgspec.json.encode(manifests[day]))
    (tmp_path / ".20260304T030000Z.partial").mkdir()  # an unfinished backup is not a backup
    deleted = rotate(tmp_path, keep_daily=2, keep_weekly=0)
    assert [p.name for p in deleted] == [stamp(at(1))]
    assert sorted(backups(tmp_path)) == [at(2), at(3)]
    assert prune_store(store, referenced_objects([manifests[2], manifests[3]])) == 1
    assert not object_path(store, f"{1:064x}").exists() and object_path(store, f"{2:064x}").exists()
