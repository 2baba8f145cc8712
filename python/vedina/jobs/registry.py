"""The table of job topics and their handlers."""

from __future__ import annotations

from vedina.jobs import mail, media_probe, webhook_received
from vedina.storage.broker import JobHandler
from vedina.storage.resources import Resources


def job_handlers(resources: Resources) -> dict[str, JobHandler]:
    return {media_probe.TOPIC: media_probe.handler(resources), mail.TOPIC: mail.handler(resources),
            webhook_received.TOPIC: webhook_received.handler(resources)}
