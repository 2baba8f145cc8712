"""The payment provider behind Vedina's billing: what the services may ask of it.

Two implementations speak to it over HTTP with the official ``stripe`` SDK:
:class:`vedina.storage.stripe_provider.StripeProvider` against Stripe itself, or
against ``vedina provider-sim`` (the same REST subset on loopback) in tests and
the embedded profile. Amounts are integers in the currency's minor unit.

Every call that creates something carries an idempotency key chosen by the
caller, derived from Vedina's own row ids (``payment-42``, ``refund-7``,
``customer-3``), so a retried call after a timeout never charges twice.

An intent's ``status`` is Stripe's: ``requires_payment_method`` (declined or
not yet paid), ``requires_confirmation``, ``requires_action``, ``processing``,
``succeeded``, ``canceled``. A decline is not an exception: it is an intent
whose status is ``requires_payment_method`` with ``failure_code`` set.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

# Intent statuses that are final for Vedina's purposes.
SUCCEEDED = "succeeded"
PROCESSING = "processing"
FAILED_STATUSES = ("requires_payment_method", "canceled")


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered 5xx: the call may be retried with
    the same idempotency key (its effect, if any, is not repeated)."""


class ProviderRejected(Exception):
    """The provider refused the request itself (4xx other than a card decline): a bug or
    a bad parameter, not something a retry fixes."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class Intent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str
    amount: int
    currency: str  # lower case ISO 4217, as Stripe writes it
    amount_received: int = 0
    failure_code: str | None = None  # e.g. card_declined, insufficient_funds
    failure_message: str | None = None
    metadata: dict[str, str] = {}


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    intent_id: str
    status: str  # pending | succeeded | failed | canceled
    amount: int
    currency: str
    metadata: dict[str, str] = {}


class PaymentProvider(Protocol):
    name: str  # "stripe": the webhook provider name its events arrive under

    async def ensure_customer(self, *, user_id: int, email: str, idempotency_key: str) -> str:
        """Create the customer for a Vedina account; returns its id (``cus_...``)."""
        ...

    async def attach_payment_method(self, *, customer_id: str, payment_method: str) -> str:
        """Attach a payment method (``pm_...``, from the client's card form) to the
        customer and make it the default; returns the payment method id."""
        ...

    async def charge(
        self, *, customer_id: str, payment_method: str, amount: int, currency: str,
        metadata: dict[str, str], idempotency_key: str, description: str = "",
    ) -> Intent:
        """Create and confirm a PaymentIntent off-session. A decline is an Intent with a
        failed status, not an exception."""
        ...

    async def retrieve_intent(self, intent_id: str) -> Intent: ...

    async def refund(self, *, intent_id: str, amount: int, metadata: dict[str, str], idempotency_key: str) -> Refund: ...

    async def retrieve_refund(self, refund_id: str) -> Refund: ...

    async def close(self) -> None: ...
