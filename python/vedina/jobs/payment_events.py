"""The payment provider's webhook events, as ``webhook.received`` processes them.

``payment_intent.*`` events settle the payment the intent was made for (found by
the ``vedina_payment_id`` in its metadata, or by the intent id); ``refund.*`` and
``charge.refunded`` finish the refunds they name. Settling is a compare-and-set on
the payment's status (:mod:`vedina.services.payments`), so duplicates, late events
and any order of arrival end in the same state; an intent Vedina never made is
logged and left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from vedina.services.payments import PaymentService
from vedina.storage.payment_provider import Intent

log = logging.getLogger(__name__)

INTENT_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.processing",
                 "payment_intent.canceled")
REFUND_EVENTS = ("refund.created", "refund.updated", "charge.refunded")


def intent_from(data: dict[str, Any]) -> Intent:
    error = data.get("last_payment_error") or {}
    return Intent(
        id=str(data["id"]), status=str(data.get("status", "")), amount=int(data.get("amount", 0)),
        currency=str(data.get("currency", "")), amount_received=int(data.get("amount_received") or 0),
        failure_code=error.get("decline_code") or error.get("code"), failure_message=error.get("message"),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )


def _refunds_in(event_type: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    if event_type == "charge.refunded":
        return list((data.get("refunds") or {}).get("data") or [])
    return [data]


def processors(*, provider: str, payments: PaymentService) -> dict[tuple[str, str], Any]:
    async def on_intent(event: dict[str, Any]) -> None:
        data = ((event["payload"].get("data") or {}).get("object")) or {}
        if not data.get("id"):
            log.warning("payment event without an intent ignored", extra={"event_type": event["event_type"]})
            return
        await payments.apply_intent(intent_from(data))

    async def on_refund(event: dict[str, Any]) -> None:
        data = ((event["payload"].get("data") or {}).get("object")) or {}
        for refund in _refunds_in(event["event_type"], data):
            raw = str((refund.get("metadata") or {}).get("vedina_refund_id", ""))
            status = refund.get("status")
            if raw.isdigit() and len(raw) < 19 and status in ("succeeded", "failed", "canceled"):
                await payments.finish_refund(int(raw), succeeded=status == "succeeded",
                                             provider_refund_id=refund.get("id"),
                                             intent_id=refund.get("payment_intent") or data.get("payment_intent"))

    table: dict[tuple[str, str], Any] = {(provider, name): on_intent for name in INTENT_EVENTS}
    table.update({(provider, name): on_refund for name in REFUND_EVENTS})
    return table
