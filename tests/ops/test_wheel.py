"""The wheel deploy/Containerfile builds installs into a clean virtualenv and works from there:
`vedina migrate --check` gates, `vedina migrate` migrates and `vedina serve` answers /health.

Slow (a maturin build, reusing target/, and a pip install of every dependency): `make ops-test`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_until_healthy
from tests.ops.test_deploy_files import WHEEL_BUILD
from vedina import __version__

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ops, pytest.mark.slow]


def maturin() -> str:
    found = shutil.which("maturin")
    if found is None:
        pytest.fail("maturin is needed to build the wheel (pip install 'maturin>=1.7,<2')")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """No VEDINA_*/PYTHONPATH from the test session: only what a fresh shell would have."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", **extra}


def test_the_containerfile_wheel_installs_alone_and_serves_health(tmp_path):
    started = time.monotonic()
    dist = tmp_path / "dist"
    subprocess.run([maturin(), *WHEEL_BUILD[1:], str(dist)], cwd=ROOT, check=True, capture_output=True, timeout=900)
    built = time.monotonic()
    [wheel] = dist.glob("vedina-*.whl")
    assert wheel.name.startswith(f"vedina-{__version__}-")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], check=True, timeout=900,
                   cwd=tmp_path, env=clean_env(PIP_CONFIG_FILE=os.devnull, **{
                       k: v for k, v in os.environ.items() if k.startswith("PIP_")}))
    installed = time.monotonic()

    run_dir = tmp_path / "run"  # no source tree in the cwd or on sys.path
    run_dir.mkdir()
    vedina = str(venv / "bin" / "vedina")
    location = subprocess.run([str(venv / "bin" / "python"), "-c", "import vedina, vedina._native; print(vedina.__file__)"],
                              cwd=run_dir, env=clean_env(), capture_output=True, text=True, check=True).stdout
    assert location.startswith(str(venv)), location  # the installed copy, not /work/main/python

    port = free_port()
    env = clean_env(DATA_DIR=str(run_dir / "data"), PORT=str(port), WORKERS="1", LOG_LEVEL="warning")

    def vedina_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([vedina, *args], cwd=run_dir, env=env, capture_output=True, text=True, timeout=120)

    before = vedina_cli("migrate", "--check")
    assert before.returncode == 1 and "pending migration: 0001" in before.stdout, before.stdout + before.stderr
    assert vedina_cli("migrate").returncode == 0
    after = vedina_cli("migrate", "--check")
    assert after.returncode == 0 and "at head and matches the schema" in after.stdout, after.stdout + after.stderr

    server = subprocess.Popen([vedina, "serve"], cwd=run_dir, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "wb"))
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_healthy(base_url, server, timeout=60)
        health = httpx.get(f"{base_url}/health", timeout=5)
        assert health.status_code == 200
        assert health.json()["version"] == __version__
        assert httpx.get(f"{base_url}/ready", timeout=5).json()["profile"] == "embedded"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    print(f"\nwheel build {built - started:.1f}s, venv + install {installed - built:.1f}s, "
          f"total {time.monotonic() - started:.1f}s")
