"""Receiving signed webhooks from external providers.

A provider signs each delivery with ``Vedina-Signature: t=<unix>,v1=<hex>``,
where the hex is HMAC-SHA256 over ``"{t}.{raw body}"`` with a secret shared
with us (the scheme Stripe made common). We accept a signature made with any
of the provider's configured secrets (so secrets rotate without downtime) and
only within a 5-minute window (so a captured delivery cannot be replayed
later); inside the window, a replay is caught by the event id, which is stored
once per provider.

>>> header = signature_header(b"whsec-example-secret-0123456789", b'{"id":"evt_1"}', timestamp=1700000000)
>>> header.startswith("t=1700000000,v1=")
True
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec

from vedina import _native
from vedina.errors import BadRequest, NotFound, Unauthorized, ValidationFailed
from vedina.storage.webhooks import WebhookEventRepository

SIGNATURE_HEADER = "vedina-signature"
TOLERANCE_SECONDS = 300


class WebhookEvent(msgspec.Struct, kw_only=True):
    """What every provider event carries; other fields are kept in the stored payload."""

    id: str
    type: str
    data: dict[str, Any] = {}


class WebhookReceipt(msgspec.Struct, kw_only=True):
    status: str  # "accepted" | "duplicate"
    event_id: str


# Deeper JSON than this is refused before decoding (the decoder recurses; MariaDB's JSON stops at 100).
MAX_DEPTH = 64
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in ``body`` (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b'""', body)):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def decode_event_body(body: bytes) -> dict[str, Any]:
    """A JSON object of bounded depth, or the 4xx saying why not."""
    if json_depth(body) > MAX_DEPTH:
        raise BadRequest(f"Webhook body nests deeper than {MAX_DEPTH} levels", details={"field": "body"})
    try:
        payload = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # out-of-range numbers included
        raise BadRequest("Webhook body is not valid JSON", details={"field": "body"}) from None
    if not isinstance(payload, dict):
        raise ValidationFailed("A webhook event is a JSON object", details={"field": "body"})
    return payload


def signature_header(secret: bytes, body: bytes, *, timestamp: int | None = None) -> str:
    """The header value a sender puts on a delivery (Vedina's own outgoing webhooks too)."""
    return _native.sign_webhook(secret, int(time.time()) if timestamp is None else timestamp, body)


class WebhookService:
    def __init__(self, events: WebhookEventRepository, secrets: dict[str, list[bytes]]) -> None:
        self._events = events
        self._secrets = secrets

    async def receive(self, *, provider: str, signature: str | None, body: bytes, now: int | None = None) -> WebhookReceipt:
        secrets = self._secrets.get(provider)
        if not secrets:
            raise NotFound(f"Unknown webhook provider {provider!r}"[:120])
        if not signature:
            raise Unauthorized("Missing Vedina-Signature header", details={"header": "Vedina-Signature"})
        try:
            _native.verify_webhook(signature, secrets, body, now=now, tolerance=TOLERANCE_SECONDS)
        except _native.MalformedSignature:
            raise BadRequest("Malformed Vedina-Signature header", details={"header": "Vedina-Signature"}) from None
        except _native.SignatureExpired:
            raise Unauthorized("Webhook signature timestamp outside the tolerance window") from None
        except _native.SignatureError:
            raise Unauthorized("Webhook signature does not match") from None
        # Parsed only after the signature holds (unsigned input is never decoded), and
        # once: the checked event and the payload that is stored are the same parse.
        payload = decode_event_body(body)
        try:
            event = msgspec.convert(payload, WebhookEvent)
        except msgspec.ValidationError as exc:
            raise ValidationFailed(f"Invalid webhook event: {exc}") from None
        if not (0 < len(event.id) <= 100 and 0 < len(event.type) <= 100):
            raise ValidationFailed("Webhook event id and type must be 1-100 characters", details={"field": "id"})
        row_id = await self._events.record(provider=provider, event_id=event.id, event_type=event.type, payload=payload)
        return WebhookReceipt(status="accepted" if row_id is not None else "duplicate", event_id=event.id)
