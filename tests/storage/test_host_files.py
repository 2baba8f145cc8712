"""Host files live in a directory private to the user; a planted one cannot block startup."""

from __future__ import annotations

import os

from vedina.config import load_settings
from vedina.storage import host_files


def test_files_go_to_a_private_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(host_files, "SHM", tmp_path / "shm")
    (tmp_path / "shm").mkdir()
    settings = load_settings({"DATA_DIR": str(tmp_path / "data")})
    path = host_files.host_file(settings, "gen")
    assert path.parent == tmp_path / "shm" / f"vedina-{os.geteuid()}"
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert host_files.host_file(settings, "gen") == path  # stable for every process of the deployment
    other = load_settings({"DATA_DIR": str(tmp_path / "other")})
    assert host_files.host_file(other, "gen") != path


def test_a_directory_opened_to_others_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(host_files, "SHM", tmp_path / "shm")
    planted = tmp_path / "shm" / f"vedina-{os.geteuid()}"
    planted.mkdir(parents=True)
    planted.chmod(0o777)  # as if another user had made it first (and let anyone write)
    settings = load_settings({"DATA_DIR": str(tmp_path / "data")})
    path = host_files.host_file(settings, "relay")
    assert path.parent == tmp_path / "data"


def test_a_planted_file_where_the_directory_should_be_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(host_files, "SHM", tmp_path / "shm")
    (tmp_path / "shm").mkdir()
    (tmp_path / "shm" / f"vedina-{os.geteuid()}").write_text("not a directory")
    settings = load_settings({"DATA_DIR": str(tmp_path / "data")})
    assert host_files.host_file(settings, "gen").parent == tmp_path / "data"
