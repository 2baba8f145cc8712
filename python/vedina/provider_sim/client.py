"""A Python client for the ``/_sim/`` control API (what tests and ``vedina serve`` use).

>>> control = SimControl("http://127.0.0.1:12111")      # doctest: +SKIP
>>> control.behave(decline_next=1)                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import httpx

from vedina.provider_sim.control import SIMULATOR_NAME


class SimControl:
    def __init__(self, base_url: str, *, timeout: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One control request (``path`` below ``/_sim/``); raises ``httpx.HTTPStatusError`` on 4xx/5xx."""
        response = httpx.request(method, f"{self.base_url}/_sim/{path.lstrip('/')}", json=body, timeout=self._timeout)
        response.raise_for_status()
        return response.json()

    def is_simulator(self) -> bool:
        """Whether a provider simulator answers at ``base_url``."""
        try:
            return self.call("GET", "health").get("simulator") == SIMULATOR_NAME
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    def behave(self, **changes: Any) -> dict[str, Any]:
        return self.call("POST", "behaviour", changes)

    def reset(self, *, objects: bool = False) -> None:
        self.call("POST", "reset", {"objects": objects})

    def webhook(self, url: str | None, secret: str | None = None) -> dict[str, Any]:
        return self.call("POST", "webhook", {"url": url, "secret": secret})

    def requests(self) -> list[dict[str, Any]]:
        return self.call("GET", "requests")["data"]

    def charges(self) -> list[dict[str, Any]]:
        return self.call("GET", "charges")["data"]

    def events(self) -> dict[str, Any]:
        return self.call("GET", "events")

    def deliver(self, order: str = "created") -> int:
        return self.call("POST", "deliver", {"order": order})["released"]

    def settle(self, intent_id: str, outcome: str = "succeeded", *, code: str = "card_declined") -> dict[str, Any]:
        return self.call("POST", f"intents/{intent_id}/settle", {"outcome": outcome, "code": code})
