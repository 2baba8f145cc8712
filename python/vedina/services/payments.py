"""Payments: charging through the provider, settling what it answers, refunds, history.

The life of a charge:

1. the caller writes a ``pending`` payment row in its own transaction (with what
   it pays for: a subscription's first period, a renewal, an upgrade);
2. :meth:`PaymentService.charge` asks the provider, with the row's own
   idempotency key (``provider_key``), so a retry after a timeout is the same charge;
3. the intent the provider answers -- now, or later in a signed webhook, or when
   :meth:`reconcile` asks about a payment stuck in ``pending``/``processing`` -- is
   settled by :meth:`apply_intent`: a compare-and-set on the payment's status
   (:mod:`vedina.storage.payments`) and, for the one caller that moved it, the
   effects on the subscription (the ``settled`` hook), a receipt email and the
   entitlement invalidation, all in one transaction with the status change.

Events may come twice, late or out of order: the status only moves forward
(``failed -> succeeded`` included, never back), so any order ends in the same state.
A success that arrives when there is nothing left to pay for (the subscription
ended meanwhile) is refunded in full.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.errors import NotFound, ValidationFailed
from vedina.services.entitlements import billing_key
from vedina.storage.clock import utcnow
from vedina.storage.invalidation import Invalidations
from vedina.storage.near_cache import NearCache
from vedina.storage.outbox import enqueue
from vedina.storage.payment_provider import (
    FAILED_STATUSES,
    PROCESSING,
    SUCCEEDED,
    Intent,
    PaymentProvider,
    ProviderRejected,
    ProviderUnavailable,
)
from vedina.storage.payments import PaymentRepository
from vedina.storage.subscriptions import SubscriptionRepository

log = logging.getLogger(__name__)

RECEIPT_TOPIC = "billing.receipt"
RECONCILE_AFTER = timedelta(minutes=1)  # a payment unsettled this long is asked about

# The settled hook: (conn, payment row, new status) -> whether the payment paid for something.
SettledHook = Callable[[AsyncConnection, dict[str, Any], str], Awaitable[bool]]


class RefundPublic(msgspec.Struct, kw_only=True):
    id: int
    amount_minor: int
    currency: str
    status: str
    reason: str
    created_at: str


class PaymentPublic(msgspec.Struct, kw_only=True):
    id: int
    subscription_id: int | None
    purpose: str
    period_number: int | None
    amount_minor: int
    currency: str
    status: str
    refunded_minor: int
    failure_code: str | None
    failure_message: str | None
    created_at: str
    succeeded_at: str | None
    refunds: list[RefundPublic] | None = None


class PaymentPage(msgspec.Struct, kw_only=True):
    items: list[PaymentPublic]
    next_cursor: str | None


def iso_time(moment: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with ``Z``."""
    return None if moment is None else moment.isoformat() + "Z"


def public_payment(row: dict[str, Any], refunds: list[dict[str, Any]] | None = None) -> PaymentPublic:
    return PaymentPublic(
        id=row["id"], subscription_id=row["subscription_id"], purpose=row["purpose"], period_number=row["period_number"],
        amount_minor=row["amount_minor"], currency=row["currency"], status=row["status"],
        refunded_minor=row["refunded_minor"], failure_code=row["failure_code"], failure_message=row["failure_message"],
        created_at=iso_time(row["created_at"]), succeeded_at=iso_time(row["succeeded_at"]),
        refunds=None if refunds is None else [
            RefundPublic(id=r["id"], amount_minor=r["amount_minor"], currency=r["currency"], status=r["status"],
                         reason=r["reason"], created_at=iso_time(r["created_at"]))
            for r in refunds
        ],
    )


def new_provider_key(kind: str) -> str:
    """A provider idempotency key: unique across every database that talks to one provider account."""
    return f"vedina-{kind}-{secrets.token_hex(16)}"


def intent_outcome(intent: Intent) -> str:
    if intent.status == SUCCEEDED:
        return "succeeded"
    if intent.status == PROCESSING:
        return "processing"
    if intent.status in FAILED_STATUSES or intent.failure_code:
        return "failed"
    return "failed"  # requires_action / requires_confirmation: an off-session charge cannot finish


class PaymentService:
    def __init__(
        self, *, engine: AsyncEngine, payments: PaymentRepository, subscriptions: SubscriptionRepository,
        provider: PaymentProvider, invalidations: Invalidations, answers: NearCache | None = None,
    ) -> None:
        self._engine = engine
        self._payments = payments
        self._subscriptions = subscriptions
        self.provider = provider
        self._invalidations = invalidations
        self._settled: SettledHook | None = None
        self._answers = answers  # first history pages per account (every billing write invalidates them)

    def on_settled(self, hook: SettledHook) -> None:
        """The subscription rules that a settled payment triggers (set once by the composition root)."""
        self._settled = hook

    # -- customers -------------------------------------------------------------------------

    async def prepare_customer(self, *, user_id: int, email: str, payment_method: str | None) -> dict[str, Any]:
        """The account's provider customer (created on first use) with ``payment_method`` as its default."""
        customer = await self._subscriptions.customer_of(user_id)
        try:
            customer_id = customer["customer_id"] if customer else await self.provider.ensure_customer(
                user_id=user_id, email=email, idempotency_key=new_provider_key("customer"),
            )
            method = customer["payment_method"] if customer else None
            if payment_method is not None:
                method = await self.provider.attach_payment_method(customer_id=customer_id, payment_method=payment_method)
        except ProviderRejected as exc:
            raise ValidationFailed(f"The payment method was refused: {exc}", details={"field": "payment_method",
                                                                                      "code": exc.code}) from None
        if method is None:
            raise ValidationFailed("A payment method is required", details={"field": "payment_method"})
        async with self._engine.begin() as conn:
            # Under the account's lock: two first subscriptions at once write one row (the first
            # customer made stays the account's; the other is never charged).
            await self._subscriptions.lock_account(conn, user_id)
            saved = await self._subscriptions.customer(conn, user_id)
            await self._subscriptions.save_customer(
                conn, user_id=user_id, provider=self.provider.name,
                customer_id=saved["customer_id"] if saved else customer_id,
                payment_method=method if saved is None or saved["customer_id"] == customer_id else saved["payment_method"],
            )
        return await self._subscriptions.customer_of(user_id)

    # -- charging --------------------------------------------------------------------------

    async def charge(self, payment_id: int) -> dict[str, Any]:
        """Ask the provider for a pending payment and settle its answer; the payment row after.
        The provider unreachable leaves the payment pending for :meth:`reconcile`."""
        payment = await self._payments.read(payment_id)
        customer = await self._subscriptions.customer_of(payment["user_id"])
        if customer is None or not customer["payment_method"]:
            await self._fail(payment_id, "payment_method_missing", "The account has no payment method")
            return await self._payments.read(payment_id)
        try:
            intent = await self.provider.charge(
                customer_id=customer["customer_id"], payment_method=customer["payment_method"],
                amount=payment["amount_minor"], currency=payment["currency"], idempotency_key=payment["provider_key"],
                metadata={"vedina_payment_id": str(payment_id), "purpose": payment["purpose"]},
                description=f"Vedina {payment['purpose']} payment {payment_id}",
            )
        except ProviderUnavailable as exc:
            log.warning("payment provider unavailable; payment left pending",
                        extra={"payment_id": payment_id, "error": str(exc)[:200]})
            return payment
        except ProviderRejected as exc:
            await self._fail(payment_id, exc.code or "provider_rejected", str(exc))
            return await self._payments.read(payment_id)
        await self.apply_intent(intent, payment_id=payment_id)
        return await self._payments.read(payment_id)

    async def _fail(self, payment_id: int, code: str, message: str) -> None:
        await self._settle(payment_id, "failed", failure_code=code, failure_message=message)

    async def apply_intent(self, intent: Intent, *, payment_id: int | None = None) -> bool:
        """Settle the payment an intent belongs to; False for an intent Vedina never made."""
        if payment_id is None:
            raw = (intent.metadata or {}).get("vedina_payment_id", "")
            payment_id = int(raw) if raw.isdigit() and len(raw) < 19 else None
        payment = await self._payments.read(payment_id) if payment_id is not None else None
        if payment is None:
            payment = await self._payments.by_intent(intent.id)
        if payment is None or (payment["intent_id"] not in (None, intent.id)):
            log.warning("provider event for an unknown payment ignored", extra={"intent_id": intent.id})
            return False
        if (intent.amount, intent.currency.lower()) != (payment["amount_minor"], payment["currency"]):
            # Not this payment's intent (another installation on the same provider account, or forged
            # metadata): its amount is what was asked for, and it must match.
            log.warning("provider event whose amount does not match the payment ignored",
                        extra={"intent_id": intent.id, "payment_id": payment["id"]})
            return False
        await self._settle(payment["id"], intent_outcome(intent), intent_id=intent.id,
                           failure_code=intent.failure_code, failure_message=intent.failure_message)
        return True

    async def _settle(self, payment_id: int, outcome: str, *, intent_id: str | None = None,
                      failure_code: str | None = None, failure_message: str | None = None) -> None:
        user_id = (await self._payments.read(payment_id))["user_id"]  # never changes: read before the lock
        if intent_id is not None:  # kept whatever happens next: reconciliation asks about it by id
            async with self._engine.begin() as conn:
                await self._payments.attach_intent(conn, payment_id, intent_id)
        refund_id = None
        async with self._engine.begin() as conn:
            # The account's lock first: on MariaDB every read after it sees the latest commits.
            await self._subscriptions.lock_account(conn, user_id)
            moved = await self._payments.settle(conn, payment_id, outcome, failure_code=failure_code,
                                                failure_message=failure_message)
            if moved and outcome in ("succeeded", "failed") and self._settled is not None:
                payment = await self._payments.get(conn, payment_id)
                applied = await self._settled(conn, payment, outcome)
                if outcome == "succeeded" and applied:
                    await enqueue(conn, topic=RECEIPT_TOPIC, payload={"payment_id": payment_id})
                elif outcome == "succeeded":
                    # Nothing left to pay for: the whole amount is reserved for a refund in this
                    # transaction, so a crash before it is sent leaves it to `retry_refunds`.
                    refund_id = await self._payments.reserve_refund(
                        conn, payment, amount=payment["amount_minor"], reason="nothing to apply the payment to",
                        actor_id=None, provider_key=new_provider_key("refund"),
                    )
        if moved:
            await self._invalidations.publish(billing_key(user_id))
            log.info("payment settled", extra={"payment_id": payment_id, "status": outcome})
        if refund_id is not None:
            log.warning("payment succeeded with nothing to pay for: refunded", extra={"payment_id": payment_id})
            await self._send_refund(refund_id)

    async def reconcile(self, *, now=None, limit: int = 100) -> int:
        """Ask the provider about payments unsettled for a while; returns how many were looked at."""
        stale = await self._payments.unsettled(updated_before=(now or utcnow()) - RECONCILE_AFTER, limit=limit)
        for payment in stale:
            try:
                if payment["intent_id"] is None and not await self._still_wanted(payment):
                    await self._fail(payment["id"], "nothing_to_pay_for", "What the payment was for has ended")
                elif payment["intent_id"] is None:
                    await self.charge(payment["id"])  # the same idempotency key: never a second charge
                else:
                    await self.apply_intent(await self.provider.retrieve_intent(payment["intent_id"]),
                                            payment_id=payment["id"])
            except ProviderUnavailable:
                log.warning("provider unavailable during reconciliation", extra={"payment_id": payment["id"]})
                return len(stale)
            except Exception:  # one payment's trouble must not stop the others: it is asked about again later
                log.exception("reconciling a payment failed", extra={"payment_id": payment["id"]})
            async with self._engine.begin() as conn:
                await self._payments.touch(conn, payment["id"])
        return len(stale)

    async def _still_wanted(self, payment: dict[str, Any]) -> bool:
        """Whether a payment never sent still pays for something (its subscription is live)."""
        if payment["subscription_id"] is None:
            return False
        async with self._engine.connect() as conn:
            subscription = await self._subscriptions.get(conn, payment["subscription_id"])
        return subscription is not None and subscription["live_user_id"] is not None

    # -- refunds ---------------------------------------------------------------------------

    async def refund(self, *, payment_id: int, amount: int | None, reason: str, actor_id: int | None) -> PaymentPublic:
        """Refund ``amount`` (None: all that is left) of a succeeded payment, never above what was paid."""
        found = await self._payments.read(payment_id)
        if found is None:
            raise NotFound(f"Payment {payment_id} not found", details={"id": payment_id})
        async with self._engine.begin() as conn:
            await self._subscriptions.lock_account(conn, found["user_id"])  # first: later reads are current
            payment = await self._payments.get(conn, payment_id)
            left = payment["amount_minor"] - payment["refunded_minor"] - payment["refunding_minor"]
            if payment["status"] != "succeeded":
                raise ValidationFailed("Only a succeeded payment can be refunded", details={"field": "payment_id"})
            amount = left if amount is None else amount
            refund_id = None if amount <= 0 else await self._payments.reserve_refund(
                conn, payment, amount=amount, reason=reason, actor_id=actor_id,
                provider_key=new_provider_key("refund"),
            )
            if refund_id is None:
                raise ValidationFailed(f"At most {left} {payment['currency']} minor units are left to refund",
                                       details={"field": "amount_minor", "refundable_minor": left})
        await self._send_refund(refund_id)
        return await self.get(payment_id=payment_id)

    async def _send_refund(self, refund_id: int) -> None:
        refund = await self._payments.refund(refund_id)
        payment = await self._payments.read(refund["payment_id"])
        try:
            if refund["provider_refund_id"]:  # made already and not finished: ask, never create again
                answer = await self.provider.retrieve_refund(refund["provider_refund_id"])
            else:
                answer = await self.provider.refund(
                    intent_id=payment["intent_id"], amount=refund["amount_minor"],
                    idempotency_key=refund["provider_key"],
                    metadata={"vedina_refund_id": str(refund_id), "vedina_payment_id": str(payment["id"])},
                )
        except ProviderUnavailable:
            log.warning("provider unavailable: refund left pending", extra={"refund_id": refund_id})
            return
        except ProviderRejected as exc:
            log.error("provider refused a refund", extra={"refund_id": refund_id, "error": str(exc)[:200]})
            await self.finish_refund(refund_id, succeeded=False, provider_refund_id=None)
            return
        if answer.status in ("succeeded", "failed", "canceled"):
            await self.finish_refund(refund_id, succeeded=answer.status == "succeeded", provider_refund_id=answer.id)
        else:
            async with self._engine.begin() as conn:
                await self._payments.note_provider_refund(conn, refund_id, answer.id)

    async def finish_refund(self, refund_id: int, *, succeeded: bool, provider_refund_id: str | None,
                            intent_id: str | None = None) -> None:
        """Finish a pending refund once (``intent_id``, from an event: it must be the payment's)."""
        refund = await self._payments.refund(refund_id)
        if refund is None:
            return
        payment = await self._payments.read(refund["payment_id"])
        if intent_id is not None and intent_id != payment["intent_id"]:
            log.warning("refund event for another payment ignored", extra={"refund_id": refund_id})
            return
        async with self._engine.begin() as conn:
            await self._subscriptions.lock_account(conn, payment["user_id"])
            finished = await self._payments.finish_refund(conn, refund_id, succeeded=succeeded,
                                                          provider_refund_id=provider_refund_id)
        if finished is not None:
            await self._invalidations.publish(billing_key(payment["user_id"]))

    async def retry_refunds(self, *, now=None, limit: int = 100) -> int:
        pending = await self._payments.pending_refunds(updated_before=(now or utcnow()) - RECONCILE_AFTER, limit=limit)
        for refund in pending:
            await self._send_refund(refund["id"])
        return len(pending)

    # -- reading ---------------------------------------------------------------------------

    async def get(self, *, payment_id: int, user_id: int | None = None) -> PaymentPublic:
        """One payment with its refunds; ``user_id`` limits it to that account's (others are 404)."""
        row = await self._payments.read(payment_id)
        if row is None or (user_id is not None and row["user_id"] != user_id):
            raise NotFound(f"Payment {payment_id} not found", details={"id": payment_id})
        return public_payment(row, await self._payments.refunds_of(payment_id))

    async def history(self, *, user_id: int, before_id: int | None, limit: int) -> PaymentPage:
        """Newest first; the first page comes from memory on a hit."""
        if before_id is None and self._answers is not None:
            key = billing_key(user_id)
            return await self._answers.get_or_load(f"history:{user_id}:{limit}", (key,),
                                                   lambda: self._history(user_id, None, limit))
        return await self._history(user_id, before_id, limit)

    async def _history(self, user_id: int, before_id: int | None, limit: int) -> PaymentPage:
        rows = await self._payments.of_user(user_id, before_id=before_id, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return PaymentPage(items=[public_payment(r) for r in rows],
                           next_cursor=str(rows[-1]["id"]) if more and rows else None)
