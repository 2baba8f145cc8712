"""The simulator process: one :class:`Simulator` behind the HTTP server.

An API request (``/v1/...``) goes through, in order: the network behaviours
(``fail_next`` closes the connection before anything happens), API-key
authentication, the idempotency store, the endpoint, ``delay_ms``, and
``drop_answer_next`` (the request took effect, the answer is lost).

Idempotency follows Stripe: a POST's ``Idempotency-Key`` (per API key) stores the
answer of a request that ran (2xx, or a 402 card error); the same key with the same
method, path and parameters replays it with ``Idempotent-Replayed: true``; with
different ones it is a 400 ``idempotency_error``. A request refused by validation
(other 4xx) stores nothing, so a corrected retry may reuse the key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import re
import signal
from typing import Any
from urllib.parse import urlsplit

import msgspec

from vedina.provider_sim import stripe_api
from vedina.provider_sim.behaviours import Behaviour
from vedina.provider_sim.control import handle_control
from vedina.provider_sim.events import EventSender, WebhookTarget
from vedina.provider_sim.forms import FormError, decode_form
from vedina.provider_sim.http import Request, Response, start_server
from vedina.provider_sim.ids import new_id
from vedina.provider_sim.state import ApiError, SimState

log = logging.getLogger("vedina.provider_sim")
_TEST_KEY = re.compile(r"^(sk|rk)_test_[A-Za-z0-9_]{4,}$")


class Stored(msgspec.Struct, frozen=True):
    fingerprint: bytes
    status: int
    body: bytes


class Simulator:
    def __init__(self, *, webhook_url: str | None, webhook_secret: str) -> None:
        self.behaviour = Behaviour()
        self.initial_target = WebhookTarget(url=webhook_url or None, secret=webhook_secret)
        self.events = EventSender(target=msgspec.structs.replace(self.initial_target), behaviour=lambda: self.behaviour)
        self.state = SimState(events=self.events, behaviour=lambda: self.behaviour, later=self._later)
        self.requests: list[dict[str, Any]] = []
        self._stored: dict[tuple[str, str], Stored] = {}
        self._timers: set[asyncio.TimerHandle] = set()

    def _later(self, seconds: float, callback) -> None:
        def run() -> None:
            self._timers.discard(handle)
            callback()

        handle = asyncio.get_running_loop().call_later(seconds, run)
        self._timers.add(handle)

    def reset(self, *, objects: bool) -> None:
        self.behaviour = Behaviour()
        self.events.target = msgspec.structs.replace(self.initial_target)
        self.events.forget()
        self.requests.clear()
        self.state.forget(objects=objects)
        if objects:
            self._stored.clear()
            for handle in self._timers:
                handle.cancel()
            self._timers.clear()

    async def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        await self.events.close()

    async def handle(self, request: Request) -> Response | None:
        if request.path.startswith("/_sim/"):
            return handle_control(self, request)
        entry = {"method": request.method, "path": request.path, "idempotency_key": request.headers.get("idempotency-key"),
                 "replayed": False, "status": None, "outcome": "answered"}
        self.requests.append(entry)
        if self.behaviour.take("fail_next"):
            entry["outcome"] = "dropped"
            return None
        response = self._api(request, entry)
        entry["status"] = response.status
        if self.behaviour.delay_ms:
            await asyncio.sleep(self.behaviour.delay_ms / 1000)
        if self.behaviour.take("drop_answer_next"):
            entry["outcome"] = "answer_dropped"
            return None
        return response

    def _api(self, request: Request, entry: dict[str, Any]) -> Response:
        request_id = new_id("req")
        headers = {"request-id": request_id}
        api_key = _api_key(request.headers.get("authorization", ""))
        if api_key is None:
            return _error(ApiError(401, "You did not provide a valid test API key (sk_test_...). Use "
                                   "'Authorization: Bearer sk_test_...'."), headers)
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        try:
            params = decode_form(request.body if request.method == "POST" else request.query)
        except (FormError, UnicodeDecodeError) as exc:
            return _error(ApiError(400, str(exc)), headers)
        fingerprint = msgspec.json.encode([request.method, request.path, params], order="sorted")
        if key is not None:
            headers["idempotency-key"] = key
            stored = self._stored.get((api_key, key))
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    return _error(ApiError(
                        400, "Keys for idempotent requests can only be used with the same parameters they were first "
                        f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
                        type="idempotency_error"), headers)
                entry["replayed"] = True
                return Response(status=stored.status, body=stored.body, headers={
                    "content-type": "application/json", **headers, "idempotent-replayed": "true"})
        try:
            response = Response.json(200, stripe_api.call(self.state, request.method, request.path, params,
                                                          request={"id": request_id, "idempotency_key": key}), headers)
        except ApiError as exc:
            response = _error(exc, headers)
        if key is not None and response.status in (200, 402):
            self._stored[(api_key, key)] = Stored(fingerprint, response.status, response.body)
        return response


def _error(exc: ApiError, headers: dict[str, str]) -> Response:
    return Response.json(exc.status, {"error": exc.error}, headers)


def _api_key(authorization: str) -> str | None:
    """The test key from ``Bearer <key>`` or ``Basic base64(<key>:)``, or None."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
    elif scheme.lower() != "bearer":
        return None
    return value if _TEST_KEY.match(value) else None


async def run(*, host: str, port: int, webhook_url: str | None, webhook_secret: str,
              exit_with_parent: bool = False) -> None:
    """Serve until SIGINT/SIGTERM (or, with ``exit_with_parent``, until the parent process is gone)."""
    if webhook_url and urlsplit(webhook_url).scheme not in ("http", "https"):
        raise ValueError(f"--webhook-url must be an http(s) URL, got {webhook_url!r}")
    simulator = Simulator(webhook_url=webhook_url, webhook_secret=webhook_secret)
    simulator.events.start()
    server = await start_server(simulator.handle, host=host, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()

    async def watch_parent() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1)
        stop.set()

    watcher = loop.create_task(watch_parent()) if exit_with_parent else None
    log.info("provider-sim listening on http://%s:%d (webhooks to %s)", host, port, webhook_url or "nowhere")
    try:
        await stop.wait()
    finally:
        if watcher:
            watcher.cancel()
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
        await simulator.close()
