"""Fixtures of the media-job tests: clips made once per session, the real services wired per test."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tests.jobs.media_helpers import make_clip


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """2-second clips: 320x240 (below every rung) and 1280x720 (the ladder), made once (CPU is shared)."""
    folder = tmp_path_factory.mktemp("clips")
    return {
        "small": make_clip(folder / "small.mp4", width=320, height=240),
        "hd": make_clip(folder / "hd.mp4", width=1280, height=720),
    }


@pytest.fixture
async def services(settings, resources):
    """Every service of a process, on the profile's real backends; encodes at the cheapest preset."""
    from vedina.composition import build_services

    yield build_services(msgspec.structs.replace(settings, transcode_preset="ultrafast"), resources)


@pytest.fixture
def media_dir(services) -> Path:
    services.settings.media_dir.mkdir(parents=True, exist_ok=True)
    return services.settings.media_dir


@pytest.fixture
def jobs(services):
    """Topic -> handler, exactly as the broker runs them."""
    return services.job_handlers()
