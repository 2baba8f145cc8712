"""The media manifest: a second backup copies only new or changed files, re-reads only files whose
size or mtime changed, records deletions, and restores byte-identical files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vedina.backup.archive import CorruptBackup
from vedina.backup.media import object_path, restore, snapshot


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_second_backup_copies_only_new_and_changed_files_and_restores_identical_bytes(tmp_path):
    media, store = tmp_path / "media", tmp_path / "store"
    (media / "movies" / "1").mkdir(parents=True)
    (media / "movies" / "1" / "source.mp4").write_bytes(os.urandom(200_000))
    (media / "poster.jpg").write_bytes(b"poster v1")
    (media / "touched.txt").write_bytes(b"same bytes")
    (media / "gone.txt").write_bytes(b"to be deleted")
    first = snapshot(media, store, None)
    assert sorted(first.copied) == ["gone.txt", "movies/1/source.mp4", "poster.jpg", "touched.txt"]
    first_tree = tree(media)

    (media / "poster.jpg").write_bytes(b"poster v2, longer")
    stat = (media / "touched.txt").stat()
    os.utime(media / "touched.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    (media / "gone.txt").unlink()
    (media / "new.txt").write_bytes(b"new")
    second = snapshot(media, store, first)
    assert sorted(second.copied) == ["new.txt", "poster.jpg"]
    assert sorted(second.hashed) == ["new.txt", "poster.jpg", "touched.txt"]  # not the unchanged source.mp4
    assert second.deleted == ["gone.txt"]
    assert [f.path for f in second.files] == ["movies/1/source.mp4", "new.txt", "poster.jpg", "touched.txt"]

    restored = tmp_path / "restored"
    assert restore(second, store, restored, replace_allowed=False) == 4
    assert tree(restored) == tree(media)
    assert (restored / "touched.txt").stat().st_mtime_ns == (media / "touched.txt").stat().st_mtime_ns
    older = tmp_path / "older"
    restore(first, store, older, replace_allowed=False)
    assert tree(older) == first_tree  # the first backup still restores its own state


def test_a_damaged_stored_media_file_is_refused(tmp_path):
    media, store = tmp_path / "media", tmp_path / "store"
    media.mkdir()
    (media / "clip.mp4").write_bytes(b"original bytes")
    manifest = snapshot(media, store, None)
    object_path(store, manifest.files[0].sha256).write_bytes(b"damaged bytes!")
    with pytest.raises(CorruptBackup, match="clip.mp4"):
        restore(manifest, store, tmp_path / "restored", replace_allowed=False)
    assert not (tmp_path / "restored" / "clip.mp4").exists()
