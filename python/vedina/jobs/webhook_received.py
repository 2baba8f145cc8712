"""``webhook.received``: process a stored webhook event once.

Processing dispatches on the event type to the processors the composition root
passes in, (provider, type) -> coroutine (the payment provider's events: see
:mod:`vedina.jobs.payment_events`); events no processor claims are still marked
processed, so the table shows what arrived and what was handled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vedina.storage.webhooks import RECEIVED_TOPIC, WebhookEventRepository

log = logging.getLogger(__name__)

TOPIC = RECEIVED_TOPIC

EventProcessor = Callable[[dict[str, Any]], Awaitable[None]]


def handler(*, events: WebhookEventRepository, processors: dict[tuple[str, str], EventProcessor]):
    async def handle(payload: dict[str, Any]) -> None:
        event = await events.get(int(payload["webhook_event_id"]))
        if event is None or event["processed_at"] is not None:
            return  # at-least-once delivery: a repeat is a no-op
        processor = processors.get((event["provider"], event["event_type"]))
        if processor is not None:
            await processor(event)
        await events.mark_processed(event["id"])
        log.info("webhook processed", extra={"provider": event["provider"], "event_type": event["event_type"],
                                             "handled": processor is not None})

    return handle
