"""The payment provider over Stripe's API, with the official ``stripe`` SDK (async calls, httpx).

The same adapter talks to Stripe (``https://api.stripe.com``) and to ``vedina
provider-sim`` (``http://127.0.0.1:<PROVIDER_SIM_PORT>``): only the API base differs.

Errors are translated once, in :func:`_translated` (as httpx does with its transports):

- a card decline (``stripe.CardError``, HTTP 402) on a charge is not an error: the
  intent from the error's ``payment_intent`` is returned, failed, with ``failure_code``
  (the ``decline_code`` when it is more precise than ``card_declined``, e.g.
  ``insufficient_funds``); elsewhere (Stripe refusing to attach a card) it is
  :class:`ProviderRejected` with the code;
- no answer (connection refused or dropped, timeout), HTTP 5xx, 409 (a concurrent
  request with the same idempotency key) and 429: :class:`ProviderUnavailable`;
- any other 4xx: :class:`ProviderRejected` with Stripe's ``code`` (or error ``type``,
  e.g. ``idempotency_error``).

The SDK retries a connection failure, 409 and 5xx by itself ``max_network_retries``
times (back-off 0.5 s doubling, capped at 5 s), sending the same ``Idempotency-Key``
each time; creating calls carry the caller's key, so neither its retries nor the
caller's repeat an effect. Attaching a card and choosing the default card carry the
SDK's generated key: repeating them is harmless.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import stripe

from vedina.config import Settings
from vedina.storage.payment_provider import Intent, PaymentProvider, ProviderRejected, ProviderUnavailable, Refund

STRIPE_API_BASE = "https://api.stripe.com"
# Stripe reports most declines as code "card_declined" with the reason in decline_code.
_VAGUE_DECLINES = {None, "", "generic_decline", "card_declined"}


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except stripe.APIConnectionError as exc:
        raise ProviderUnavailable(f"payment provider unreachable: {exc.user_message or exc}") from exc
    except stripe.StripeError as exc:
        status = exc.http_status
        if status is None or status >= 500 or status in (409, 429):
            raise ProviderUnavailable(f"payment provider answered {status}: {exc.user_message or exc}") from exc
        error = (exc.json_body or {}).get("error") or {}
        code = exc.code or error.get("type")
        raise ProviderRejected(f"payment provider refused the request ({status}): {exc.user_message or exc}",
                               code=code) from exc


def _intent(data: Mapping[str, Any]) -> Intent:
    error = data.get("last_payment_error") or {}
    code = error.get("decline_code") if error.get("decline_code") not in _VAGUE_DECLINES else error.get("code")
    return Intent(
        id=data["id"], status=data["status"], amount=data["amount"], currency=data["currency"],
        amount_received=data.get("amount_received") or 0, failure_code=code or None,
        failure_message=error.get("message"), metadata=dict(data.get("metadata") or {}),
    )


def _refund(data: Mapping[str, Any]) -> Refund:
    return Refund(id=data["id"], intent_id=data["payment_intent"], status=data["status"], amount=data["amount"],
                  currency=data["currency"], metadata=dict(data.get("metadata") or {}))


class StripeProvider(PaymentProvider):
    """>>> provider = StripeProvider(api_key="sk_test_...", api_base="http://127.0.0.1:12111")  # doctest: +SKIP"""

    name = "stripe"

    def __init__(self, *, api_key: str, api_base: str = STRIPE_API_BASE, max_network_retries: int = 2,
                 timeout: float = 30.0) -> None:
        self.api_base = api_base
        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(api_key, http_client=self._http, base_addresses={"api": api_base},
                                           max_network_retries=max_network_retries)

    async def ensure_customer(self, *, user_id: int, email: str, idempotency_key: str) -> str:
        with _translated():
            customer = await self._client.v1.customers.create_async(
                {"email": email, "metadata": {"vedina_user_id": str(user_id)}},
                options={"idempotency_key": idempotency_key},
            )
        return customer.id

    async def attach_payment_method(self, *, customer_id: str, payment_method: str) -> str:
        with _translated():
            method = await self._client.v1.payment_methods.attach_async(payment_method, {"customer": customer_id})
            await self._client.v1.customers.update_async(
                customer_id, {"invoice_settings": {"default_payment_method": method.id}},
            )
        return method.id

    async def charge(
        self, *, customer_id: str, payment_method: str, amount: int, currency: str,
        metadata: dict[str, str], idempotency_key: str, description: str = "",
    ) -> Intent:
        params: dict[str, Any] = {
            "amount": amount, "currency": currency.lower(), "customer": customer_id,
            "payment_method": payment_method, "payment_method_types": ["card"],
            "confirm": True, "off_session": True, "metadata": metadata,
        }
        if description:
            params["description"] = description
        with _translated():
            try:
                intent = await self._client.v1.payment_intents.create_async(
                    params, options={"idempotency_key": idempotency_key})
            except stripe.CardError as exc:
                declined = ((exc.json_body or {}).get("error") or {}).get("payment_intent")
                if not declined:
                    raise
                return _intent(declined)
        return _intent(intent.to_dict())

    async def retrieve_intent(self, intent_id: str) -> Intent:
        with _translated():
            intent = await self._client.v1.payment_intents.retrieve_async(intent_id)
        return _intent(intent.to_dict())

    async def refund(self, *, intent_id: str, amount: int, metadata: dict[str, str], idempotency_key: str) -> Refund:
        with _translated():
            refund = await self._client.v1.refunds.create_async(
                {"payment_intent": intent_id, "amount": amount, "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            )
        return _refund(refund.to_dict())

    async def retrieve_refund(self, refund_id: str) -> Refund:
        with _translated():
            refund = await self._client.v1.refunds.retrieve_async(refund_id)
        return _refund(refund.to_dict())

    async def close(self) -> None:
        await self._http.close_async()


def build_payment_provider(settings: Settings) -> PaymentProvider:
    """The provider the settings name: Stripe, or the simulator on loopback (STRIPE_API_BASE overrides both)."""
    default_base = STRIPE_API_BASE if settings.payment_provider == "stripe" else \
        f"http://127.0.0.1:{settings.provider_sim_port}"
    return StripeProvider(api_key=settings.stripe_api_key, api_base=settings.stripe_api_base or default_base)
