"""Stripe events and their delivery to the webhook endpoint.

An event is made when an object changes (``emit``), logged, then either held
(``hold_events``) or queued. One sender task delivers the queue in order: a POST
of the event's JSON with ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"t.body">``. A non-2xx answer or a connection error is retried after a back-off
(doubled each time) up to ``webhook_attempts`` attempts, without holding up the
events behind it; so, as with Stripe, a retried event can arrive after later ones.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec

from vedina.provider_sim.ids import new_id
from vedina.services.webhooks import signature_header

log = logging.getLogger("vedina.provider_sim")
API_VERSION = "2026-10-28.endive"


class Delivery(msgspec.Struct, kw_only=True):
    event_id: str
    type: str
    attempt: int
    status: int | None  # None: the connection failed
    error: str | None = None


class WebhookTarget(msgspec.Struct, kw_only=True):
    url: str | None
    secret: str


class EventSender:
    def __init__(self, *, target: WebhookTarget, behaviour: Callable[[], Any]) -> None:
        self.target = target
        self._behaviour = behaviour  # the simulator's current Behaviour (it is replaced on update)
        self.events: list[dict[str, Any]] = []
        self.deliveries: list[Delivery] = []
        self.held: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[tuple[dict[str, Any], int]] = asyncio.Queue()
        self._retries: set[asyncio.TimerHandle] = set()
        self._task: asyncio.Task | None = None
        self._http: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=10)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        for handle in self._retries:
            handle.cancel()
        if self._task:
            self._task.cancel()
        if self._http:
            await self._http.aclose()

    def emit(self, event_type: str, obj: dict[str, Any], *, request: dict[str, Any] | None = None) -> dict[str, Any]:
        event = {
            "id": new_id("evt"), "object": "event", "api_version": API_VERSION, "created": int(time.time()),
            "data": {"object": copy.deepcopy(obj)}, "livemode": False, "pending_webhooks": 1,
            "request": request or {"id": None, "idempotency_key": None}, "type": event_type,
        }
        self.events.append(event)
        if self._behaviour().hold_events:
            self.held.append(event)
        else:
            self._enqueue(event)
        return event

    def release(self, order: str) -> int:
        """Queue the held events, oldest first (``created``) or newest first (``reverse``)."""
        held, self.held = self.held, []
        for event in reversed(held) if order == "reverse" else held:
            self._enqueue(event)
        return len(held)

    def forget(self) -> None:
        """Drop the logs and the held events (``/_sim/reset``); queued deliveries still go."""
        self.events.clear()
        self.deliveries.clear()
        self.held.clear()

    def _enqueue(self, event: dict[str, Any]) -> None:
        copies = 2 if self._behaviour().duplicate_events else 1
        for _ in range(copies):
            self._queue.put_nowait((event, 1))

    async def _run(self) -> None:
        while True:
            event, attempt = await self._queue.get()
            try:
                await self._deliver(event, attempt)
            except Exception:  # a sender that dies would silently stop every later delivery
                log.exception("webhook delivery of %s failed unexpectedly", event["id"])

    async def _deliver(self, event: dict[str, Any], attempt: int) -> None:
        url, secret = self.target.url, self.target.secret
        if not url:
            return
        assert self._http is not None
        body = msgspec.json.encode(event)
        headers = {
            "content-type": "application/json; charset=utf-8",
            "stripe-signature": signature_header(secret.encode(), body),
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        status: int | None = None
        error = None
        try:
            status = (await self._http.post(url, content=body, headers=headers)).status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.deliveries.append(Delivery(event_id=event["id"], type=event["type"], attempt=attempt,
                                        status=status, error=error))
        behaviour = self._behaviour()
        if (status is None or not 200 <= status < 300) and attempt < behaviour.webhook_attempts:
            delay = behaviour.webhook_retry_seconds * 2 ** (attempt - 1)
            loop = asyncio.get_running_loop()

            def retry() -> None:
                self._retries.discard(handle)
                self._queue.put_nowait((event, attempt + 1))

            handle = loop.call_later(delay, retry)
            self._retries.add(handle)
