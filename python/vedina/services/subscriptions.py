"""Subscriptions: a state machine with a full history, paid through :mod:`vedina.services.payments`.

::

    (new) ──> incomplete ──paid──> active <──paid── past_due ──grace over──> expired
                │  │                 │  ▲              ▲  │
                │  └─trial─> trialing ─┘  └─renewed─┐  │  └──canceled──> canceled
                │                    │              │  │
                └──unpaid/cancel──> expired   renewal declined
                                   active/trialing ──canceled (at period end or at once)──> canceled

Every transition is one transaction: the subscription row, its event in
``subscription_events`` and the outbox message about it (the notice email) are
written together, after the account's lock (one billing write per account at a time).
One live subscription per account is a unique index (``live_user_id``).

- **Subscribe**: a plan with trial days (and an account that never had a
  trial) starts ``trialing`` without a charge; otherwise ``incomplete`` until the
  first payment succeeds (now, by webhook, or by reconciliation). A declined first
  payment is 402 and leaves it ``incomplete``: subscribing again replaces it.
- **Renewal** (scheduled): at the period's end, a charge for the next period at the
  subscription's plan version (or the pending downgrade's); success extends the
  period, a decline makes it ``past_due`` and it is retried every
  ``BILLING_RETRY_HOURS`` until ``PAST_DUE_GRACE_DAYS`` have passed: ``expired``.
- **Cancel** at period end (access stays until then, ``resume`` undoes it) or at once.
- **Upgrade** at once, charging the prorated difference
  (:func:`vedina.services.billing_rules.prorate`); **downgrade** at the period's end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.errors import Conflict, NotFound, PaymentDeclined, ValidationFailed
from vedina.services.billing_rules import add_period, is_upgrade, prorate
from vedina.services.entitlements import billing_key
from vedina.services.payments import PaymentPublic, PaymentService, iso_time, new_provider_key, public_payment
from vedina.services.plans import PLANS_KEY, Plan, plan_of
from vedina.storage.invalidation import Invalidations
from vedina.storage.near_cache import NearCache
from vedina.storage.outbox import enqueue
from vedina.storage.payments import DuplicateCharge, PaymentRepository
from vedina.storage.plans import PlanRepository
from vedina.storage.subscriptions import SubscriptionRepository

log = logging.getLogger(__name__)

NOTICE_TOPIC = "billing.notice"
MIN_CHARGE_MINOR = 50  # the smallest charge providers accept (Stripe: 50 cents, or its equivalent)
# Events the account holder is told about by email.
NOTIFIED = frozenset({"activated", "trial_started", "payment_failed", "canceled", "expired", "upgraded", "downgraded"})

# (status, event) -> the status after it. Events not listed are refused (a bug, not input).
TRANSITIONS: dict[tuple[str, str], str] = {
    ("incomplete", "activated"): "active",
    ("incomplete", "payment_failed"): "incomplete",
    ("incomplete", "expired"): "expired",
    ("trialing", "renewed"): "active",
    ("active", "renewed"): "active",
    ("past_due", "renewed"): "active",
    ("trialing", "payment_failed"): "past_due",
    ("active", "payment_failed"): "past_due",
    ("past_due", "payment_failed"): "past_due",
    ("past_due", "expired"): "expired",
    ("trialing", "canceled"): "canceled",
    ("active", "canceled"): "canceled",
    ("past_due", "canceled"): "canceled",
}
# Events that change terms, not the status.
for _status in ("trialing", "active"):
    for _event in ("cancel_scheduled", "resumed", "upgraded", "upgrade_failed", "downgrade_scheduled",
                   "downgrade_withdrawn", "downgraded"):
        TRANSITIONS[(_status, _event)] = _status
TRANSITIONS[("past_due", "upgrade_failed")] = "past_due"
TRANSITIONS[("past_due", "downgraded")] = "past_due"


class SubscriptionPublic(msgspec.Struct, kw_only=True):
    id: int
    status: str
    plan: Plan
    pending_plan: Plan | None
    current_period_start: str | None
    current_period_end: str | None
    trial_end: str | None
    cancel_at_period_end: bool
    past_due_since: str | None
    canceled_at: str | None
    ended_at: str | None
    created_at: str
    latest_payment: PaymentPublic | None = None


class SubscriptionEvent(msgspec.Struct, kw_only=True):
    event: str
    from_status: str | None
    to_status: str
    detail: dict[str, Any]
    actor_id: int | None
    created_at: str


class SubscriptionHistory(msgspec.Struct, kw_only=True):
    subscription_id: int
    items: list[SubscriptionEvent]


class SubscriptionList(msgspec.Struct, kw_only=True):
    items: list[SubscriptionPublic]


class SubscriptionService:
    def __init__(
        self, *, engine: AsyncEngine, subscriptions: SubscriptionRepository, plans: PlanRepository,
        payments: PaymentService, payment_rows: PaymentRepository, invalidations: Invalidations,
        past_due_grace: timedelta, retry_every: timedelta, incomplete_expire: timedelta,
        answers: NearCache | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._subscriptions = subscriptions
        self._plans = plans
        self._payments = payments
        self._payment_rows = payment_rows
        self._invalidations = invalidations
        self._past_due_grace = past_due_grace
        self._retry_every = retry_every
        self._incomplete_expire = incomplete_expire
        self._answers = answers  # the live subscription per account (every billing write invalidates it)
        self.clock = clock  # injectable: tests move time
        payments.on_settled(self.payment_settled)

    def now(self) -> datetime:
        return datetime.fromtimestamp(int(self.clock()), UTC).replace(tzinfo=None)

    # -- transitions -----------------------------------------------------------------------

    async def _transition(self, conn: AsyncConnection, subscription: dict[str, Any], event: str, *,
                          actor_id: int | None = None, detail: dict[str, Any] | None = None, **values: Any) -> str:
        status = subscription["status"]
        to = TRANSITIONS.get((status, event))
        if to is None:  # the subscription moved on meanwhile (callers check first; this is the backstop)
            raise Conflict(f"A {status} subscription cannot take {event!r}", code="subscription_state_changed",
                           details={"status": status})
        if to != status:
            values["status"] = to
        await self._subscriptions.update(conn, subscription, **values)
        event_id = await self._subscriptions.record(
            conn, subscription_id=subscription["id"], event=event, from_status=status, to_status=to,
            detail=detail, actor_id=actor_id,
        )
        if event in NOTIFIED:
            await enqueue(conn, topic=NOTICE_TOPIC, payload={"event_id": event_id})
        return to

    async def _changed(self, user_id: int) -> None:
        await self._invalidations.publish(billing_key(user_id))

    # -- subscribing -----------------------------------------------------------------------

    async def subscribe(self, *, user_id: int, email: str, plan_id: int, payment_method: str | None) -> tuple[SubscriptionPublic, bool]:
        """Start a subscription; returns it and whether it is settled (False: the first payment
        is still being processed: 202). A declined first payment raises PaymentDeclined (402)."""
        plan = await self._plans.get(plan_id)
        if plan is None or not plan["active"]:
            raise NotFound(f"Plan {plan_id} not found", details={"field": "plan_id", "id": plan_id})
        live = await self._subscriptions.live_of(user_id)
        if live is not None and not await self._replaceable(live):
            raise Conflict("The account already has a subscription: change its plan instead",
                           code="subscription_exists", details={"subscription_id": live["id"]})
        customer = await self._payments.prepare_customer(user_id=user_id, email=email, payment_method=payment_method)
        now = self.now()
        payment_id = None
        async with self._engine.begin() as conn:
            await self._subscriptions.lock_account(conn, user_id)
            live = await self._subscriptions.live(conn, user_id)
            if live is not None:
                if not await self._replaceable(live, conn):
                    raise Conflict("The account already has a subscription: change its plan instead",
                                   code="subscription_exists", details={"subscription_id": live["id"]})
                await self._transition(conn, live, "expired", actor_id=user_id, detail={"reason": "replaced"},
                                       ended_at=now)
            customer = await self._subscriptions.customer(conn, user_id)
            if plan["trial_days"] > 0 and not customer["trial_used"]:
                trial_end = now + timedelta(days=plan["trial_days"])
                subscription_id = await self._subscriptions.insert(
                    conn, user_id=user_id, status="trialing", plan_version_id=plan["version_id"], period_number=0,
                    current_period_start=now, current_period_end=trial_end, trial_end=trial_end,
                    cancel_at_period_end=False,
                )
                await self._subscriptions.use_trial(conn, user_id)
                event_id = await self._subscriptions.record(
                    conn, subscription_id=subscription_id, event="trial_started", from_status=None,
                    to_status="trialing", detail={"plan_version_id": plan["version_id"]}, actor_id=user_id,
                )
                await enqueue(conn, topic=NOTICE_TOPIC, payload={"event_id": event_id})
            else:
                subscription_id = await self._subscriptions.insert(
                    conn, user_id=user_id, status="incomplete", plan_version_id=plan["version_id"], period_number=0,
                    cancel_at_period_end=False,
                )
                await self._subscriptions.record(
                    conn, subscription_id=subscription_id, event="created", from_status=None, to_status="incomplete",
                    detail={"plan_version_id": plan["version_id"]}, actor_id=user_id,
                )
                payment_id = await self._payment_rows.insert(
                    conn, user_id=user_id, subscription_id=subscription_id, purpose="initial",
                    charge_key=f"sub-{subscription_id}-initial", plan_version_id=plan["version_id"], period_number=1,
                    amount_minor=plan["price_minor"], currency=plan["currency"], provider=self._payments.provider.name,
                    provider_key=new_provider_key("payment"),
                )
        await self._changed(user_id)
        if payment_id is not None:
            payment = await self._payments.charge(payment_id)
            if payment["status"] == "failed":
                raise PaymentDeclined(
                    payment["failure_message"] or "The payment was declined",
                    details={"subscription_id": subscription_id, "payment_id": payment_id,
                             "failure_code": payment["failure_code"]},
                )
            settled = payment["status"] == "succeeded"
        else:
            settled = True
        return await self.get(subscription_id=subscription_id), settled

    async def _replaceable(self, live: dict[str, Any], conn: AsyncConnection | None = None) -> bool:
        """An unpaid subscription whose first payment failed may be replaced by a new one."""
        if live["status"] != "incomplete":
            return False
        if conn is None:
            async with self._engine.connect() as own:
                payment = await self._subscriptions.latest_payment(own, live["id"], "initial")
        else:
            payment = await self._subscriptions.latest_payment(conn, live["id"], "initial")
        return payment is None or payment["status"] == "failed"

    # -- what a settled payment does -------------------------------------------------------

    async def payment_settled(self, conn: AsyncConnection, payment: dict[str, Any], outcome: str) -> bool:
        """The effect of a payment that just settled (called once per settlement, inside its
        transaction). False: there was nothing to pay for any more (the caller refunds)."""
        if payment["subscription_id"] is None:
            return False
        subscription = await self._subscriptions.get(conn, payment["subscription_id"])
        status, now = subscription["status"], self.now()
        detail = {"payment_id": payment["id"], "amount_minor": payment["amount_minor"]}
        purpose = payment["purpose"]
        if outcome == "failed":
            detail["failure_code"] = payment["failure_code"]
            if purpose == "upgrade":
                if (status, "upgrade_failed") in TRANSITIONS:
                    await self._transition(conn, subscription, "upgrade_failed", detail=detail)
            elif status in ("incomplete", "trialing", "active", "past_due") and (
                purpose == "initial" or payment["period_number"] == subscription["period_number"] + 1
            ):
                values = {"past_due_since": subscription["past_due_since"] or now} if status != "incomplete" else {}
                await self._transition(conn, subscription, "payment_failed", detail=detail, **values)
            return True
        # succeeded
        if purpose == "initial":
            if status != "incomplete":
                return False
            terms = await self._plans.version(conn, subscription["plan_version_id"])
            await self._transition(conn, subscription, "activated", detail=detail, period_number=1,
                                   current_period_start=now, current_period_end=add_period(now, terms["billing_period"]))
            return True
        if purpose == "renewal":
            if status not in ("trialing", "active", "past_due") or payment["period_number"] != subscription["period_number"] + 1:
                return False
            terms = await self._plans.version(conn, payment["plan_version_id"])
            start = subscription["current_period_end"]
            values: dict[str, Any] = {
                "period_number": payment["period_number"], "current_period_start": start, "past_due_since": None,
                "current_period_end": add_period(start, terms["billing_period"]),
            }
            if payment["plan_version_id"] != subscription["plan_version_id"]:
                await self._transition(conn, subscription, "downgraded", detail={
                    "from_plan_version_id": subscription["plan_version_id"], "to_plan_version_id": payment["plan_version_id"],
                }, plan_version_id=payment["plan_version_id"], pending_plan_version_id=None)
                subscription = await self._subscriptions.get(conn, subscription["id"])
            await self._transition(conn, subscription, "renewed", detail=detail, **values)
            return True
        if purpose == "upgrade":
            # Only onto the period it was prorated for, from another plan, on a subscription in good
            # standing; anything else (a renewal or another change came first) is refunded.
            if (status not in ("trialing", "active") or payment["period_number"] != subscription["period_number"]
                    or payment["plan_version_id"] == subscription["plan_version_id"]):
                return False
            await self._transition(conn, subscription, "upgraded", detail={
                **detail, "from_plan_version_id": subscription["plan_version_id"],
                "to_plan_version_id": payment["plan_version_id"],
            }, plan_version_id=payment["plan_version_id"], pending_plan_version_id=None)
            return True
        return False

    # -- changes by the account holder -----------------------------------------------------

    async def _live_for_change(self, conn: AsyncConnection, user_id: int) -> dict[str, Any]:
        await self._subscriptions.lock_account(conn, user_id)
        subscription = await self._subscriptions.live(conn, user_id)
        if subscription is None:
            raise NotFound("The account has no subscription")
        return subscription

    async def cancel(self, *, user_id: int, at_once: bool) -> SubscriptionPublic:
        now = self.now()
        async with self._engine.begin() as conn:
            subscription = await self._live_for_change(conn, user_id)
            status = subscription["status"]
            if status == "incomplete":
                await self._transition(conn, subscription, "expired", actor_id=user_id,
                                       detail={"reason": "canceled"}, ended_at=now, canceled_at=now)
            elif at_once or status == "past_due":
                await self._transition(conn, subscription, "canceled", actor_id=user_id, detail={"at_once": True},
                                       canceled_at=now, ended_at=now, pending_plan_version_id=None)
            elif subscription["cancel_at_period_end"]:
                raise Conflict("The subscription already ends at its period's end", code="already_canceled")
            else:
                await self._transition(conn, subscription, "cancel_scheduled", actor_id=user_id,
                                       detail={"ends_at": iso_time(subscription["current_period_end"])},
                                       cancel_at_period_end=True, canceled_at=now)
        await self._changed(user_id)
        return await self.get(subscription_id=subscription["id"])

    async def account_closed(self, user_id: int) -> None:
        """A deleted account's live subscription ends at once (never charged again)."""
        async with self._engine.begin() as conn:
            await self._subscriptions.lock_account(conn, user_id)
            subscription = await self._subscriptions.live(conn, user_id)
            if subscription is None:
                return
            event = "expired" if subscription["status"] == "incomplete" else "canceled"
            now = self.now()
            await self._transition(conn, subscription, event, detail={"reason": "account_closed"}, canceled_at=now,
                                   ended_at=now, pending_plan_version_id=None)
        await self._changed(user_id)

    async def resume(self, *, user_id: int) -> SubscriptionPublic:
        async with self._engine.begin() as conn:
            subscription = await self._live_for_change(conn, user_id)
            if not subscription["cancel_at_period_end"] or subscription["status"] not in ("trialing", "active"):
                raise Conflict("The subscription is not set to end", code="not_canceled")
            await self._transition(conn, subscription, "resumed", actor_id=user_id, cancel_at_period_end=False,
                                   canceled_at=None)
        await self._changed(user_id)
        return await self.get(subscription_id=subscription["id"])

    async def change_plan(self, *, user_id: int, plan_id: int) -> tuple[SubscriptionPublic, bool]:
        """Upgrade at once (a prorated charge) or downgrade at the period's end; returns the
        subscription and whether the change is settled (False: the charge is processing)."""
        now = self.now()
        payment_id = None
        async with self._engine.begin() as conn:
            subscription = await self._live_for_change(conn, user_id)
            if subscription["status"] not in ("trialing", "active"):
                raise Conflict(f"A {subscription['status']} subscription cannot change plan",
                               code="subscription_not_active", details={"status": subscription["status"]})
            target = await self._plans.current_of(conn, plan_id)
            if target is None or not target["active"]:
                raise NotFound(f"Plan {plan_id} not found", details={"field": "plan_id", "id": plan_id})
            current = await self._plans.version(conn, subscription["plan_version_id"])
            last_upgrade = await self._subscriptions.latest_payment(conn, subscription["id"], "upgrade")
            if last_upgrade is not None and last_upgrade["status"] in ("pending", "processing"):
                raise Conflict("A plan change is being charged already", code="plan_change_in_progress",
                               details={"payment_id": last_upgrade["id"]})
            if target["currency"] != current["currency"]:
                raise ValidationFailed("The new plan is billed in another currency", details={"field": "plan_id"})
            if target["plan_id"] == current["plan_id"]:
                if subscription["pending_plan_version_id"] is None:
                    raise Conflict("The subscription is on this plan already", code="same_plan")
                await self._transition(conn, subscription, "downgrade_withdrawn", actor_id=user_id,
                                       pending_plan_version_id=None)
            elif target["billing_period"] != current["billing_period"] or not is_upgrade(current=current,
                                                                                       target=target):
                # A downgrade, or any change of billing period, starts with the next period.
                await self._transition(conn, subscription, "downgrade_scheduled", actor_id=user_id,
                                       detail={"to_plan_version_id": target["version_id"],
                                               "at": iso_time(subscription["current_period_end"])},
                                       pending_plan_version_id=target["version_id"])
            else:
                start, end = subscription["current_period_start"], subscription["current_period_end"]
                amount = 0 if subscription["status"] == "trialing" else prorate(
                    old_price=current["price_minor"], new_price=target["price_minor"],
                    remaining_seconds=int((end - now).total_seconds()), period_seconds=int((end - start).total_seconds()),
                )
                if amount < MIN_CHARGE_MINOR:  # below what a card can be charged: the rest of the period is on us
                    await self._transition(conn, subscription, "upgraded", actor_id=user_id, detail={
                        "from_plan_version_id": current["version_id"], "to_plan_version_id": target["version_id"],
                        "amount_minor": 0,
                    }, plan_version_id=target["version_id"], pending_plan_version_id=None)
                else:
                    try:
                        payment_id = await self._payment_rows.insert(
                            conn, user_id=user_id, subscription_id=subscription["id"], purpose="upgrade",
                            charge_key=f"sub-{subscription['id']}-upgrade-{subscription['version']}",
                            plan_version_id=target["version_id"], period_number=subscription["period_number"],
                            amount_minor=amount, currency=target["currency"], provider=self._payments.provider.name,
                            provider_key=new_provider_key("payment"),
                        )
                    except DuplicateCharge:
                        raise Conflict("A plan change is being charged already", code="plan_change_in_progress") from None
        await self._changed(user_id)
        settled = True
        if payment_id is not None:
            payment = await self._payments.charge(payment_id)
            if payment["status"] == "failed":
                raise PaymentDeclined(payment["failure_message"] or "The payment was declined", details={
                    "subscription_id": subscription["id"], "payment_id": payment_id,
                    "failure_code": payment["failure_code"],
                })
            settled = payment["status"] == "succeeded"
        return await self.get(subscription_id=subscription["id"]), settled

    # -- scheduled work --------------------------------------------------------------------

    async def renew_due(self, *, limit: int = 100) -> int:
        """Charge the next period of subscriptions whose period ended (cancel those set to end,
        retry failed renewals every ``BILLING_RETRY_HOURS``); returns how many were charged."""
        now = self.now()
        charged = 0
        after = None
        # Every due subscription, page by page: those waiting (a retry not due yet, a charge in
        # flight) cannot hold back the others.
        while page := await self._subscriptions.due(statuses=("trialing", "active", "past_due"),
                                                    period_end_before=now, limit=limit, after=after):
            after = (page[-1]["current_period_end"], page[-1]["id"])
            charges = []
            for due in page:
                async with self._engine.begin() as conn:
                    await self._subscriptions.lock_account(conn, due["user_id"])
                    subscription = await self._subscriptions.get(conn, due["id"])
                    payment_id = await self._renew(conn, subscription, now)
                await self._changed(due["user_id"])
                if payment_id is not None:
                    charges.append(payment_id)
            for payment_id in charges:
                await self._payments.charge(payment_id)
            charged += len(charges)
        return charged

    async def _renew(self, conn: AsyncConnection, subscription: dict[str, Any], now: datetime) -> int | None:
        status = subscription["status"]
        if status not in ("trialing", "active", "past_due") or subscription["current_period_end"] > now:
            return None
        if subscription["cancel_at_period_end"] or not await self._subscriptions.account_active(conn, subscription["user_id"]):
            await self._transition(conn, subscription, "canceled", detail={
                "reason": "period_end" if subscription["cancel_at_period_end"] else "account_closed",
            }, ended_at=subscription["current_period_end"], pending_plan_version_id=None)
            return None
        last = await self._subscriptions.latest_payment(conn, subscription["id"], "renewal")
        period = subscription["period_number"] + 1
        attempt = 1
        if last is not None and last["period_number"] == period:
            attempt = int(last["charge_key"].rsplit("-", 1)[1]) + 1
            # Retry k+1 is due k retry intervals after the renewal first failed.
            retry_at = (subscription["past_due_since"] or now) + (attempt - 1) * self._retry_every
            if last["status"] != "failed" or now < retry_at:
                return None  # being charged, or retried later
        version_id = subscription["pending_plan_version_id"] or subscription["plan_version_id"]
        terms = await self._plans.version(conn, version_id)
        try:
            return await self._payment_rows.insert(
                conn, user_id=subscription["user_id"], subscription_id=subscription["id"], purpose="renewal",
                charge_key=f"sub-{subscription['id']}-renewal-{period}-{attempt}", plan_version_id=version_id,
                period_number=period, amount_minor=terms["price_minor"], currency=terms["currency"],
                provider=self._payments.provider.name, provider_key=new_provider_key("payment"),
            )
        except DuplicateCharge:
            return None

    async def expire_due(self, *, limit: int = 100) -> int:
        """Expire past-due subscriptions past their grace, and unpaid new ones past theirs."""
        now = self.now()
        ended = 0
        overdue = await self._subscriptions.past_due(since_before=now - self._past_due_grace, limit=limit)
        unpaid, after_id = [], 0
        # Page through: unpaid ones whose first payment is still processing stay, and must not hold back others.
        while page := await self._subscriptions.incomplete(created_before=now - self._incomplete_expire, limit=limit,
                                                           after_id=after_id):
            unpaid.extend(page)
            after_id = page[-1]["id"]
        for row in [*overdue, *unpaid]:
            async with self._engine.begin() as conn:
                await self._subscriptions.lock_account(conn, row["user_id"])
                subscription = await self._subscriptions.get(conn, row["id"])
                if subscription["status"] == "past_due" and subscription["past_due_since"] <= now - self._past_due_grace:
                    reason = "payment_failed"
                elif subscription["status"] == "incomplete" and await self._replaceable(subscription, conn):
                    reason = "unpaid"
                else:
                    continue
                await self._transition(conn, subscription, "expired", detail={"reason": reason}, ended_at=now)
            await self._changed(row["user_id"])
            ended += 1
        return ended

    # -- reading ---------------------------------------------------------------------------

    async def get(self, *, subscription_id: int, user_id: int | None = None) -> SubscriptionPublic:
        row = await self._subscriptions.read(subscription_id)
        if row is None or (user_id is not None and row["user_id"] != user_id):
            raise NotFound(f"Subscription {subscription_id} not found", details={"id": subscription_id})
        return await self._public(row)

    async def current(self, *, user_id: int) -> SubscriptionPublic:
        """The live subscription (from memory on a hit: every billing write of the account, and
        every plan change, invalidates it)."""
        if self._answers is None:
            found = await self._load_current(user_id)
        else:
            found = await self._answers.get_or_load(
                f"current:{user_id}", (billing_key(user_id), PLANS_KEY), lambda: self._load_current(user_id))
        if found is None:
            raise NotFound("The account has no subscription")
        return found

    async def _load_current(self, user_id: int) -> SubscriptionPublic | None:
        row = await self._subscriptions.live_of(user_id)
        return None if row is None else await self._public(row)

    async def list(self, *, user_id: int) -> SubscriptionList:
        return SubscriptionList(items=[await self._public(r) for r in await self._subscriptions.of_user(user_id)])

    async def history(self, *, subscription_id: int, user_id: int | None = None) -> SubscriptionHistory:
        await self.get(subscription_id=subscription_id, user_id=user_id)  # 404 for another account's
        return SubscriptionHistory(subscription_id=subscription_id, items=[
            SubscriptionEvent(event=e["event"], from_status=e["from_status"], to_status=e["to_status"],
                              detail=e["detail"] or {}, actor_id=e["actor_id"], created_at=iso_time(e["created_at"]))
            for e in await self._subscriptions.events(subscription_id)
        ])

    async def _public(self, row: dict[str, Any]) -> SubscriptionPublic:
        async with self._engine.connect() as conn:
            plan = await self._plans.version(conn, row["plan_version_id"])
            pending = (await self._plans.version(conn, row["pending_plan_version_id"])
                       if row["pending_plan_version_id"] else None)
            latest = await self._subscriptions.latest_payment(conn, row["id"])
        return SubscriptionPublic(
            id=row["id"], status=row["status"], plan=plan_of(plan), pending_plan=plan_of(pending) if pending else None,
            current_period_start=iso_time(row["current_period_start"]), current_period_end=iso_time(row["current_period_end"]),
            trial_end=iso_time(row["trial_end"]), cancel_at_period_end=bool(row["cancel_at_period_end"]),
            past_due_since=iso_time(row["past_due_since"]), canceled_at=iso_time(row["canceled_at"]),
            ended_at=iso_time(row["ended_at"]), created_at=iso_time(row["created_at"]),
            latest_payment=public_payment(latest) if latest else None,
        )

