"""The table of job topics and their handlers."""

from __future__ import annotations

from vedina.jobs import media_probe
from vedina.storage.broker import JobHandler
from vedina.storage.resources import Resources


def job_handlers(resources: Resources) -> dict[str, JobHandler]:
    return {media_probe.TOPIC: media_probe.handler(resources)}
