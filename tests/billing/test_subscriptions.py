"""Subscriptions and payments on both profiles, against the real Stripe SDK talking to
`vedina provider-sim`: the state machine, renewals, proration, refunds, settlement order."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa

from tests.billing.conftest import make_plans, new_account, published_movie, run_scheduled
from vedina.errors import Conflict, PaymentDeclined, Refused, ValidationFailed
from vedina.services.visibility import Audience
from vedina.storage.clock import utcnow
from vedina.storage.payment_provider import Intent
from vedina.storage.schema import payments, subscription_events


async def history(services, subscription_id: int) -> list[str]:
    return [e.event for e in (await services.subscriptions.history(subscription_id=subscription_id)).items]


async def payment_rows(services, user_id: int) -> list[dict]:
    async with services.resources.engine.connect() as conn:
        rows = (await conn.execute(sa.select(payments).where(payments.c.user_id == user_id).order_by(payments.c.id)))
        return [dict(r) for r in rows.mappings()]


async def subscribed(services, tier: str = "standard", *, method: str = "pm_card_visa"):
    plans = await make_plans(services)
    user_id, email = await new_account(services)
    subscription, settled = await services.subscriptions.subscribe(user_id=user_id, email=email, plan_id=plans[tier],
                                                                   payment_method=method)
    return user_id, plans, subscription, settled


async def test_a_paid_subscription_is_active_for_one_period_with_its_history_and_entitlement(billing, provider_sim):
    user_id, plans, subscription, settled = await subscribed(billing, "premium")
    assert settled and subscription.status == "active"
    assert subscription.plan.tier == "premium" and subscription.latest_payment.amount_minor == 1999
    assert subscription.latest_payment.status == "succeeded"
    assert await history(billing, subscription.id) == ["created", "activated"]
    entitlement = await billing.playback._plans.entitlement_of(user_id=user_id)
    assert (entitlement.tier, entitlement.screens, entitlement.max_height) == ("premium", 4, 2160)
    charges = provider_sim.control.charges()
    assert [(c["amount"], c["currency"], c["status"]) for c in charges] == [(1999, "usd", "succeeded")]
    assert charges[0]["metadata"]["vedina_payment_id"] == str(subscription.latest_payment.id)


async def test_one_live_subscription_per_account(billing):
    user_id, plans, subscription, _ = await subscribed(billing)
    with pytest.raises(Conflict) as refused:
        await billing.subscriptions.subscribe(user_id=user_id, email="x@example.org", plan_id=plans["basic"],
                                              payment_method="pm_card_visa")
    assert refused.value.code == "subscription_exists"


async def test_a_declined_first_payment_is_402_and_subscribing_again_replaces_it(billing, provider_sim):
    plans = await make_plans(billing)
    user_id, email = await new_account(billing)
    with pytest.raises(PaymentDeclined) as declined:
        await billing.subscriptions.subscribe(user_id=user_id, email=email, plan_id=plans["basic"],
                                              payment_method="pm_card_chargeDeclined")
    first = declined.value.details["subscription_id"]
    assert declined.value.details["failure_code"] == "card_declined"
    assert (await billing.subscriptions.get(subscription_id=first)).status == "incomplete"
    assert (await billing.playback._plans.entitlement_of(user_id=user_id)).tier is None
    again, settled = await billing.subscriptions.subscribe(user_id=user_id, email=email, plan_id=plans["basic"],
                                                           payment_method="pm_card_visa")
    assert settled and again.status == "active" and again.id != first
    assert (await billing.subscriptions.get(subscription_id=first)).status == "expired"
    assert await history(billing, first) == ["created", "payment_failed", "expired"]


async def test_a_trial_starts_without_a_charge_and_its_end_charges_the_first_period(billing, provider_sim):
    plans = await make_plans(billing, trial_days=7)
    user_id, email = await new_account(billing)
    subscription, settled = await billing.subscriptions.subscribe(user_id=user_id, email=email,
                                                                  plan_id=plans["standard"], payment_method="pm_card_visa")
    assert settled and subscription.status == "trialing" and subscription.latest_payment is None
    assert provider_sim.control.charges() == []
    assert (await billing.playback._plans.entitlement_of(user_id=user_id)).tier == "standard"
    billing.clock.advance(days=7, seconds=1)
    assert await billing.subscriptions.renew_due() == 1
    after = await billing.subscriptions.get(subscription_id=subscription.id)
    assert after.status == "active" and after.current_period_start == subscription.trial_end
    assert [c["amount"] for c in provider_sim.control.charges()] == [1499]
    # One trial per account: a second subscription (after cancelling) is charged at once.
    await billing.subscriptions.cancel(user_id=user_id, at_once=True)
    second, _ = await billing.subscriptions.subscribe(user_id=user_id, email=email, plan_id=plans["standard"],
                                                      payment_method=None)
    assert second.status == "active" and second.trial_end is None


async def test_renewal_charges_the_next_period_once_and_extends_it(billing, provider_sim):
    user_id, plans, subscription, _ = await subscribed(billing, "basic")
    billing.clock.advance(days=32)
    assert await billing.subscriptions.renew_due() == 1
    assert await billing.subscriptions.renew_due() == 0  # the period is paid: nothing more to charge
    renewed = await billing.subscriptions.get(subscription_id=subscription.id)
    assert renewed.status == "active" and renewed.current_period_start == subscription.current_period_end
    assert renewed.current_period_end > subscription.current_period_end
    rows = await payment_rows(billing, user_id)
    assert [(r["purpose"], r["period_number"], r["amount_minor"], r["status"]) for r in rows] == [
        ("initial", 1, 999, "succeeded"), ("renewal", 2, 999, "succeeded")]
    assert await history(billing, subscription.id) == ["created", "activated", "renewed"]


async def test_a_declined_renewal_goes_past_due_is_retried_then_expires_and_access_ends(billing, provider_sim):
    premium_movie = await published_movie(billing, plan_tier="premium")
    user_id, plans, subscription, _ = await subscribed(billing, "premium")
    await billing.playback.check_viewer(user_id=user_id, audience=Audience(), movie_id=premium_movie)
    billing.clock.advance(days=32)
    provider_sim.control.behave(decline_next=2)
    await billing.subscriptions.renew_due()
    past_due = await billing.subscriptions.get(subscription_id=subscription.id)
    assert past_due.status == "past_due" and past_due.latest_payment.failure_code == "card_declined"
    assert (await billing.playback._plans.entitlement_of(user_id=user_id)).tier == "premium"  # grace
    assert await billing.subscriptions.renew_due() == 0  # not retried before BILLING_RETRY_HOURS
    billing.clock.advance(days=1, seconds=1)
    assert await billing.subscriptions.renew_due() == 1  # the retry, declined again
    billing.clock.advance(days=7)
    assert await billing.subscriptions.expire_due() == 1
    expired = await billing.subscriptions.get(subscription_id=subscription.id)
    assert expired.status == "expired" and expired.ended_at is not None
    assert (await billing.playback._plans.entitlement_of(user_id=user_id)).tier is None
    assert await history(billing, subscription.id) == [
        "created", "activated", "payment_failed", "payment_failed", "expired"]
    with pytest.raises(Refused) as refused:  # playback asks the same entitlement
        await billing.playback.check_viewer(user_id=user_id, audience=Audience(), movie_id=premium_movie)
    assert refused.value.code == "plan_required"
    keys = [r["charge_key"] for r in await payment_rows(billing, user_id)]
    assert keys[1:] == [f"sub-{subscription.id}-renewal-2-1", f"sub-{subscription.id}-renewal-2-2"]


async def test_a_past_due_subscription_paid_on_retry_is_active_again(billing, provider_sim):
    user_id, plans, subscription, _ = await subscribed(billing, "basic")
    billing.clock.advance(days=32)
    provider_sim.control.behave(decline_next=1)
    await billing.subscriptions.renew_due()
    billing.clock.advance(days=1, seconds=1)
    await billing.subscriptions.renew_due()
    again = await billing.subscriptions.get(subscription_id=subscription.id)
    assert again.status == "active" and again.past_due_since is None
    assert again.current_period_start == subscription.current_period_end


async def test_cancel_at_period_end_keeps_access_until_then_and_resume_undoes_it(billing):
    user_id, plans, subscription, _ = await subscribed(billing, "standard")
    cancelled = await billing.subscriptions.cancel(user_id=user_id, at_once=False)
    assert cancelled.status == "active" and cancelled.cancel_at_period_end
    with pytest.raises(Conflict):
        await billing.subscriptions.cancel(user_id=user_id, at_once=False)
    resumed = await billing.subscriptions.resume(user_id=user_id)
    assert not resumed.cancel_at_period_end
    await billing.subscriptions.cancel(user_id=user_id, at_once=False)
    billing.clock.advance(days=32)
    # At the period's end the entitlement is gone even before the scheduled task runs...
    assert (await billing.playback._plans.entitlement_of(user_id=user_id)).tier is None
    assert await billing.subscriptions.renew_due() == 0  # ...which cancels it, with no charge
    assert (await billing.subscriptions.get(subscription_id=subscription.id)).status == "canceled"
    assert await history(billing, subscription.id) == [
        "created", "activated", "cancel_scheduled", "resumed", "cancel_scheduled", "canceled"]


async def test_an_upgrade_charges_the_prorated_difference_to_the_minor_unit(billing, provider_sim):
    user_id, plans, subscription, _ = await subscribed(billing, "basic")
    row = await billing.subscriptions._subscriptions.read(subscription.id)
    start, end = row["current_period_start"], row["current_period_end"]
    billing.clock.advance(seconds=(end - start).total_seconds() / 3 + 7)  # about a third of the period used
    now = billing.subscriptions.now()
    expected = (1999 - 999) * int((end - now).total_seconds()) // int((end - start).total_seconds())
    upgraded, settled = await billing.subscriptions.change_plan(user_id=user_id, plan_id=plans["premium"])
    assert settled and upgraded.plan.tier == "premium" and upgraded.current_period_end == subscription.current_period_end
    assert upgraded.latest_payment.purpose == "upgrade" and upgraded.latest_payment.amount_minor == expected
    assert [c["amount"] for c in provider_sim.control.charges()][-1] == expected
    assert (await billing.playback._plans.entitlement_of(user_id=user_id)).tier == "premium"


async def test_a_declined_upgrade_keeps_the_plan(billing, provider_sim):
    user_id, plans, subscription, _ = await subscribed(billing, "basic")
    billing.clock.advance(days=3)
    provider_sim.control.behave(decline_next=1)
    with pytest.raises(PaymentDeclined):
        await billing.subscriptions.change_plan(user_id=user_id, plan_id=plans["premium"])
    kept = await billing.subscriptions.get(subscription_id=subscription.id)
    assert kept.plan.tier == "basic" and kept.status == "active"
    assert (await history(billing, subscription.id))[-1] == "upgrade_failed"


async def test_a_downgrade_waits_for_the_period_end_and_renews_at_the_lower_price(billing, provider_sim):
    user_id, plans, subscription, _ = await subscribed(billing, "premium")
    scheduled, settled = await billing.subscriptions.change_plan(user_id=user_id, plan_id=plans["basic"])
    assert settled and scheduled.plan.tier == "premium" and scheduled.pending_plan.tier == "basic"
    assert (await billing.playback._plans.entitlement_of(user_id=user_id)).tier == "premium"
    billing.clock.advance(days=32)
    await billing.subscriptions.renew_due()
    renewed = await billing.subscriptions.get(subscription_id=subscription.id)
    assert renewed.plan.tier == "basic" and renewed.pending_plan is None
    assert [c["amount"] for c in provider_sim.control.charges()] == [1999, 999]


async def test_a_price_change_adds_a_version_and_existing_subscriptions_keep_theirs(billing, provider_sim):
    user_id, plans, subscription, _ = await subscribed(billing, "basic")
    changed = await billing.plans.update(plan_id=plans["basic"], changes={"price_minor": 1299})
    assert changed.version == 2 and changed.price_minor == 1299
    billing.clock.advance(days=32)
    await billing.subscriptions.renew_due()
    assert [c["amount"] for c in provider_sim.control.charges()] == [999, 999]
    newcomer, email = await new_account(billing)
    fresh, _ = await billing.subscriptions.subscribe(user_id=newcomer, email=email, plan_id=plans["basic"],
                                                     payment_method="pm_card_visa")
    assert fresh.latest_payment.amount_minor == 1299


async def test_settlement_in_any_order_or_twice_ends_in_the_same_state(billing, provider_sim):
    """A `failed` then a `succeeded` (a second try of the intent), duplicates, and a `failed`
    after `succeeded`: the payment ends succeeded and the subscription active, activated once."""
    provider_sim.control.behave(processing=True, settle_after_seconds=None)
    user_id, plans, subscription, settled = await subscribed(billing, "basic")
    assert not settled and subscription.status == "incomplete"
    payment = subscription.latest_payment
    assert payment.status == "processing"
    intent_id = (await payment_rows(billing, user_id))[0]["intent_id"]

    def intent(status: str, code: str | None = None) -> Intent:
        return Intent(id=intent_id, status=status, amount=999, currency="usd", failure_code=code,
                      metadata={"vedina_payment_id": str(payment.id)})

    for event in (intent("requires_payment_method", "card_declined"), intent("requires_payment_method", "card_declined"),
                  intent("succeeded"), intent("succeeded"), intent("requires_payment_method", "card_declined"),
                  intent("processing")):
        assert await billing.payments.apply_intent(event)
    final = await billing.subscriptions.get(subscription_id=subscription.id)
    assert final.status == "active" and final.latest_payment.status == "succeeded"
    assert await history(billing, subscription.id) == ["created", "payment_failed", "activated"]
    async with billing.resources.engine.connect() as conn:
        receipts = (await conn.execute(sa.text("SELECT COUNT(*) FROM outbox WHERE topic = 'billing.receipt'"
                                               " AND payload LIKE :p"), {"p": f'%"payment_id": {payment.id}}}%'})).scalar()
    assert receipts == 1


async def test_an_event_for_an_intent_vedina_never_made_changes_nothing(billing):
    before = await _event_count(billing)
    assert not await billing.payments.apply_intent(
        Intent(id="pi_unknown_123", status="succeeded", amount=100, currency="usd", metadata={}))
    assert not await billing.payments.apply_intent(
        Intent(id="pi_unknown_456", status="succeeded", amount=100, currency="usd",
               metadata={"vedina_payment_id": "999999999"}))
    assert await _event_count(billing) == before


async def _event_count(services) -> int:
    async with services.resources.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(subscription_events))).scalar_one()


async def test_a_network_failure_leaves_the_payment_pending_and_reconciliation_charges_once(billing, provider_sim):
    plans = await make_plans(billing)
    user_id, email = await new_account(billing)
    await billing.payments.prepare_customer(user_id=user_id, email=email, payment_method="pm_card_visa")
    # The SDK retries a dropped connection itself (same idempotency key): drop more than it retries.
    provider_sim.control.behave(fail_next=10)
    subscription, settled = await billing.subscriptions.subscribe(user_id=user_id, email=email,
                                                                  plan_id=plans["basic"], payment_method=None)
    assert not settled and subscription.latest_payment.status == "pending"
    provider_sim.control.behave(fail_next=0)
    assert await billing.payments.reconcile(now=_later(minutes=2)) == 1
    assert (await billing.subscriptions.get(subscription_id=subscription.id)).status == "active"
    assert [c["amount"] for c in provider_sim.control.charges()] == [999]


async def test_a_lost_answer_is_retried_with_the_same_key_and_charges_once(billing, provider_sim):
    plans = await make_plans(billing)
    user_id, email = await new_account(billing)
    await billing.payments.prepare_customer(user_id=user_id, email=email, payment_method="pm_card_visa")
    provider_sim.control.behave(drop_answer_next=1)  # the charge happens, its answer is lost
    subscription, _ = await billing.subscriptions.subscribe(user_id=user_id, email=email, plan_id=plans["basic"],
                                                            payment_method=None)
    await billing.payments.reconcile(now=_later(minutes=2))
    assert (await billing.subscriptions.get(subscription_id=subscription.id)).status == "active"
    assert len(provider_sim.control.charges()) == 1
    assert any(r["replayed"] for r in provider_sim.control.requests())


async def test_a_processing_charge_is_settled_by_reconciliation(billing, provider_sim):
    provider_sim.control.behave(processing=True, settle_after_seconds=None)
    user_id, plans, subscription, settled = await subscribed(billing, "basic")
    assert not settled
    intent_id = (await payment_rows(billing, user_id))[0]["intent_id"]
    provider_sim.control.behave(hold_events=True)  # the webhook is not what settles it here
    provider_sim.control.settle(intent_id, "succeeded")
    assert await billing.payments.reconcile(now=_later(minutes=2)) == 1
    assert (await billing.subscriptions.get(subscription_id=subscription.id)).status == "active"


async def test_refunds_are_partial_or_full_and_never_above_what_was_paid(billing, provider_sim):
    user_id, plans, subscription, _ = await subscribed(billing, "premium")
    payment_id = subscription.latest_payment.id
    partial = await billing.payments.refund(payment_id=payment_id, amount=500, reason="goodwill", actor_id=None)
    assert partial.refunded_minor == 500 and [r.status for r in partial.refunds] == ["succeeded"]
    with pytest.raises(ValidationFailed) as too_much:
        await billing.payments.refund(payment_id=payment_id, amount=1500, reason="x", actor_id=None)
    assert too_much.value.details["refundable_minor"] == 1499
    # Concurrent refunds of the rest: exactly one gets it.
    results = await asyncio.gather(*[billing.payments.refund(payment_id=payment_id, amount=1499, reason="race",
                                                             actor_id=None) for _ in range(3)],
                                   return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, ValidationFailed) for r in results if isinstance(r, Exception))
    final = await billing.payments.get(payment_id=payment_id)
    assert final.refunded_minor == 1999
    refund_calls = [r for r in provider_sim.control.requests() if r["path"] == "/v1/refunds" and r["status"] == 200]
    assert len(refund_calls) == 2


async def test_a_success_after_the_subscription_ended_is_refunded_in_full(billing, provider_sim):
    provider_sim.control.behave(processing=True, settle_after_seconds=None, hold_events=True)
    user_id, plans, subscription, _ = await subscribed(billing, "basic")
    await billing.subscriptions.cancel(user_id=user_id, at_once=True)  # an unpaid one expires at once
    intent_id = (await payment_rows(billing, user_id))[0]["intent_id"]
    provider_sim.control.settle(intent_id, "succeeded")  # the customer's bank confirms after all
    await billing.payments.apply_intent(await billing.payments.provider.retrieve_intent(intent_id))
    paid = await billing.payments.get(payment_id=subscription.latest_payment.id)
    assert paid.status == "succeeded" and paid.refunded_minor == 999
    assert (await billing.subscriptions.get(subscription_id=subscription.id)).status == "expired"


def _later(*, minutes: int):
    from datetime import timedelta

    from vedina.storage.clock import utcnow

    return utcnow() + timedelta(minutes=minutes)


async def test_the_demo_plans_are_added_once(billing):
    from vedina.demo.loader import DEMO_PLANS, add_demo_plans

    first = await add_demo_plans(billing)
    assert await add_demo_plans(billing) == 0
    offered = {plan.code: plan for plan in (await billing.plans.list()).items}
    assert first in (0, len(DEMO_PLANS)) and all(plan["code"] in offered for plan in DEMO_PLANS)
    assert offered["standard-monthly"].trial_days == 7 and offered["premium-monthly"].tier == "premium"


# -- the review's cases: late, concurrent and stuck settlements ------------------------------


async def test_a_renewal_that_succeeds_after_the_subscription_was_cancelled_is_refunded(billing, provider_sim):
    user_id, plans, subscription, _ = await subscribed(billing, "basic")
    billing.clock.advance(days=32)
    provider_sim.control.behave(processing=True, settle_after_seconds=None, hold_events=True)
    await billing.subscriptions.renew_due()
    renewal = (await payment_rows(billing, user_id))[-1]
    assert renewal["purpose"] == "renewal" and renewal["status"] == "processing"
    await billing.subscriptions.cancel(user_id=user_id, at_once=True)
    provider_sim.control.settle(renewal["intent_id"], "succeeded")
    await billing.payments.apply_intent(await billing.payments.provider.retrieve_intent(renewal["intent_id"]))
    paid = await billing.payments.get(payment_id=renewal["id"])
    assert paid.status == "succeeded" and paid.refunded_minor == 999
    after = await billing.subscriptions.get(subscription_id=subscription.id)
    assert after.status == "canceled" and after.current_period_end == subscription.current_period_end


async def test_a_second_upgrade_waits_for_the_first_and_a_late_upgrade_after_a_renewal_is_refunded(billing,
                                                                                                      provider_sim):
    user_id, plans, subscription, _ = await subscribed(billing, "basic")
    billing.clock.advance(days=10)
    provider_sim.control.behave(processing=True, settle_after_seconds=None, hold_events=True)
    pending, settled = await billing.subscriptions.change_plan(user_id=user_id, plan_id=plans["premium"])
    assert not settled and pending.plan.tier == "basic"
    with pytest.raises(Conflict) as busy:
        await billing.subscriptions.change_plan(user_id=user_id, plan_id=plans["standard"])
    assert busy.value.code == "plan_change_in_progress"
    upgrade = (await payment_rows(billing, user_id))[-1]
    provider_sim.control.behave(processing=False)
    billing.clock.advance(days=22)
    await billing.subscriptions.renew_due()  # the next period at the basic price comes first
    provider_sim.control.settle(upgrade["intent_id"], "succeeded")
    await billing.payments.apply_intent(await billing.payments.provider.retrieve_intent(upgrade["intent_id"]))
    late = await billing.payments.get(payment_id=upgrade["id"])
    assert late.status == "succeeded" and late.refunded_minor == late.amount_minor
    assert (await billing.subscriptions.get(subscription_id=subscription.id)).plan.tier == "basic"


async def test_changing_the_billing_period_waits_for_the_period_end_without_a_charge(billing, provider_sim):
    user_id, plans, subscription, _ = await subscribed(billing, "basic")
    yearly = await billing.plans.create(code=f"premium-yearly-{uuid.uuid4().hex[:6]}", name="Premium yearly",
                                        tier="premium", description="", active=True, terms={
                                            "price_minor": 19_900, "currency": "usd", "billing_period": "year",
                                            "screens": 4, "max_height": 2160, "trial_days": 0})
    scheduled, _ = await billing.subscriptions.change_plan(user_id=user_id, plan_id=yearly.id)
    assert scheduled.plan.tier == "basic" and scheduled.pending_plan.billing_period == "year"
    assert [c["amount"] for c in provider_sim.control.charges()] == [999]


async def test_reconciliation_goes_on_past_a_payment_it_cannot_settle(billing, provider_sim):
    provider_sim.control.behave(processing=True, settle_after_seconds=None, hold_events=True)
    first_user, plans, broken, _ = await subscribed(billing, "basic")
    second_user, email = await new_account(billing)
    healthy, _ = await billing.subscriptions.subscribe(user_id=second_user, email=email, plan_id=plans["basic"],
                                                       payment_method="pm_card_visa")
    async with billing.resources.engine.begin() as conn:  # an intent the provider does not know (any more)
        await conn.execute(sa.update(payments).where(payments.c.id == broken.latest_payment.id)
                           .values(intent_id=f"pi_gone_{uuid.uuid4().hex[:8]}"))
    intent_id = (await payment_rows(billing, second_user))[0]["intent_id"]
    provider_sim.control.settle(intent_id, "succeeded")
    assert await billing.payments.reconcile(now=_later(minutes=2)) == 2
    assert (await billing.subscriptions.get(subscription_id=healthy.id)).status == "active"
    assert (await billing.subscriptions.get(subscription_id=broken.id)).status == "incomplete"


async def test_subscriptions_waiting_for_a_retry_do_not_hold_back_due_renewals(billing, provider_sim):
    plans = await make_plans(billing)
    waiting = []
    for _ in range(3):
        user_id, email = await new_account(billing)
        waiting.append((await billing.subscriptions.subscribe(user_id=user_id, email=email, plan_id=plans["basic"],
                                                              payment_method="pm_card_visa"))[0])
    billing.clock.advance(days=32)
    provider_sim.control.behave(decline_next=3)
    await billing.subscriptions.renew_due()  # all three past due, their retries not due yet
    billing.clock.advance(days=-31.5)  # a subscription that started half a day after the others
    late_user, email = await new_account(billing)
    late, _ = await billing.subscriptions.subscribe(user_id=late_user, email=email, plan_id=plans["basic"],
                                                    payment_method="pm_card_visa")
    billing.clock.advance(days=31.6)  # its period has ended; the others' retries are due a day after they failed
    assert await billing.subscriptions.renew_due(limit=2) == 1  # pages of two: the late one is still reached
    assert (await billing.subscriptions.get(subscription_id=late.id)).current_period_start == late.current_period_end


async def test_a_deleted_account_s_subscription_ends_and_is_never_charged_again(billing, provider_sim):
    user_id, plans, subscription, _ = await subscribed(billing, "premium")
    await billing.accounts.delete(user_id=user_id, erase=False)
    ended = await billing.subscriptions.get(subscription_id=subscription.id)
    assert ended.status == "canceled" and (await history(billing, subscription.id))[-1] == "canceled"
    billing.clock.advance(days=32)
    assert await billing.subscriptions.renew_due() == 0
    assert len(provider_sim.control.charges()) == 1


async def test_a_refund_finished_twice_counts_once(billing, provider_sim):
    provider_sim.control.behave(hold_events=True)
    user_id, plans, subscription, _ = await subscribed(billing, "standard")
    payment_id = subscription.latest_payment.id
    async with billing.resources.engine.begin() as conn:
        payment = await billing.payments._payments.get(conn, payment_id)
        refund_id = await billing.payments._payments.reserve_refund(conn, payment, amount=400, reason="x",
                                                                    actor_id=None, provider_key="k-" + uuid.uuid4().hex)
    await asyncio.gather(*[billing.payments.finish_refund(refund_id, succeeded=True, provider_refund_id="re_1")
                           for _ in range(3)])
    done = await billing.payments.get(payment_id=payment_id)
    assert done.refunded_minor == 400
    async with billing.resources.engine.connect() as conn:
        in_flight = (await conn.execute(sa.select(payments.c.refunding_minor).where(payments.c.id == payment_id))).scalar()
    assert in_flight == 0


async def test_an_idempotency_key_left_running_by_a_dead_process_is_taken_over(billing):
    from datetime import timedelta

    from vedina.storage.schema import idempotency_keys

    owner, key = f"user:{uuid.uuid4().int % 10**9}", uuid.uuid4().hex
    async with billing.resources.engine.begin() as conn:
        await conn.execute(sa.insert(idempotency_keys).values(
            owner=owner, key=key, request_hash="h" * 64, state="running", created_at=utcnow() - timedelta(minutes=6),
            expires_at=utcnow() + timedelta(hours=18)))

    async def call():
        return 201, b'{"ok":true}'

    answer, replayed = await billing.idempotency.run(owner=owner, key=key, fingerprint="h" * 64, call=call,
                                                     encode=lambda body: b"")
    assert answer == (201, b'{"ok":true}') and not replayed


async def test_a_receipt_has_an_html_and_a_text_body_with_the_amount_and_escaped_names(billing):
    import email
    from pathlib import Path

    from vedina.jobs import billing_mail

    user_id, plans, subscription, _ = await subscribed(billing, "standard")
    await billing.job_handlers()[billing_mail.RECEIPT_TOPIC]({"payment_id": subscription.latest_payment.id})
    folder = Path(billing.settings.data_dir, "mail")
    sent = [email.message_from_bytes(p.read_bytes()) for p in folder.glob("*.eml")]
    receipt = next(m for m in sent if f"receipt #{subscription.latest_payment.id}" in m["Subject"])
    parts = {part.get_content_type(): part.get_payload(decode=True).decode() for part in receipt.walk()
             if not part.is_multipart()}
    assert set(parts) == {"text/plain", "text/html"}
    assert "14.99 USD" in parts["text/plain"] and "14.99 USD" in parts["text/html"]
    assert "Billing <b>Test</b>" in parts["text/plain"]
    assert "<b>Test</b>" not in parts["text/html"] and "&lt;b&gt;Test&lt;/b&gt;" in parts["text/html"]


async def test_an_idempotency_key_is_kept_24_hours_then_reused_as_new_and_the_sweep_task_removes_expired_ones(billing):
    from vedina.errors import IdempotencyKeyReused
    from vedina.storage.schema import idempotency_keys

    owner, calls = f"user:{uuid.uuid4().int % 10**9}", []

    async def run(key: str, body: str):
        async def call():
            calls.append(body)
            return 201, b'{"call":%d}' % len(calls)

        return await billing.idempotency.run(owner=owner, key=key, fingerprint=body * 64, call=call,
                                             encode=lambda answer: b"")

    async def kept() -> dict[str, str]:
        async with billing.resources.engine.connect() as conn:
            rows = await conn.execute(sa.select(idempotency_keys.c.key, idempotency_keys.c.request_hash)
                                      .where(idempotency_keys.c.owner == owner))
            return dict(rows.all())

    assert await run("old", "a") == ((201, b'{"call":1}'), False)
    assert await run("swept", "a") == ((201, b'{"call":2}'), False)
    billing.clock.advance(seconds=24 * 3600 - 60)  # a minute before the keys' 24 h are up
    assert await run("old", "a") == ((201, b'{"call":1}'), True)
    with pytest.raises(IdempotencyKeyReused):
        await run("old", "b")
    assert await run("fresh", "a") == ((201, b'{"call":3}'), False)
    await run_scheduled(billing, "idempotency_keys.sweep")
    assert set(await kept()) == {"old", "swept", "fresh"}, "nothing is swept before its time"

    billing.clock.advance(seconds=61)  # "old" and "swept" are past their 24 h, "fresh" is not
    assert await run("old", "b") == ((201, b'{"call":4}'), False), "an expired key is a new key, whatever the body"
    await run_scheduled(billing, "idempotency_keys.sweep")
    assert await kept() == {"old": "b" * 64, "fresh": "a" * 64}
    assert await run("old", "b") == ((201, b'{"call":4}'), True)
    with pytest.raises(IdempotencyKeyReused):
        await run("old", "a")
    assert calls == ["a", "a", "a", "b"]

    billing.clock.advance(days=1, seconds=1)
    await run_scheduled(billing, "idempotency_keys.sweep")
    assert await kept() == {}


async def test_the_scheduler_runs_the_billing_tasks_at_their_ticks_and_a_period_is_renewed_once(billing, provider_sim):
    from vedina.jobs.scheduler import Scheduler

    user_id, plans, subscription, _ = await subscribed(billing, "basic")
    scheduler = Scheduler(billing.resources.engine, billing.periodic_tasks(), clock=billing.subscriptions.now)
    try:
        assert {"billing.renewals", "billing.expiries", "billing.reconcile"} <= set(await scheduler.run_once())
        billing.clock.advance(days=32)
        assert "billing.renewals" in await scheduler.run_once()
        assert await scheduler.run_once() == []  # the same ticks: nothing runs twice
        billing.clock.advance(seconds=60)
        assert "billing.renewals" in await scheduler.run_once()  # the next tick: the period is paid already
    finally:
        await scheduler.close()
    rows = await payment_rows(billing, user_id)
    assert [(r["purpose"], r["period_number"], r["status"]) for r in rows] == [
        ("initial", 1, "succeeded"), ("renewal", 2, "succeeded")]
    assert await history(billing, subscription.id) == ["created", "activated", "renewed"]
    assert [c["amount"] for c in provider_sim.control.charges()] == [999, 999]
