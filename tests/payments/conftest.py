"""The payment provider suites: the session's `vedina provider-sim` (reset around each test),
the real StripeProvider talking HTTP to it, and a tiny webhook receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vedina.storage.stripe_provider import StripeProvider


@pytest.fixture
def sim(provider_sim):
    provider_sim.control.reset()
    yield provider_sim
    provider_sim.control.reset()


@pytest.fixture
async def provider(sim):
    """No SDK retries: each test sees exactly what one request did."""
    stripe_provider = StripeProvider(api_key=sim.API_KEY, api_base=sim.url, max_network_retries=0, timeout=10)
    yield stripe_provider
    await stripe_provider.close()


class Delivery:
    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        self.headers = headers
        self.body = body

    @property
    def event(self) -> dict:
        import json

        return json.loads(self.body)


class WebhookReceiver:
    """A local HTTP endpoint that records every POST; the first ``fail_first`` get a 500."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.fail_first = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    failing = receiver.fail_first > 0
                    receiver.fail_first -= 1 if failing else 0
                    if not failing:
                        receiver.deliveries.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(500 if failing else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/webhooks/stripe"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, *, timeout: float = 20) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.deliveries)} of {count} webhook deliveries arrived")
            time.sleep(0.05)
        return list(self.deliveries)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver(sim) -> Iterator[WebhookReceiver]:
    """A receiver the simulator delivers to (signed with the session's secret)."""
    webhook_receiver = WebhookReceiver()
    sim.control.webhook(webhook_receiver.url)
    yield webhook_receiver
    webhook_receiver.close()
