"""StripeProvider: the real stripe SDK over HTTP against the real `vedina provider-sim` process."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.conftest import free_port
from vedina.config import load_settings
from vedina.storage.payment_provider import FAILED_STATUSES, ProviderRejected, ProviderUnavailable
from vedina.storage.stripe_provider import StripeProvider, build_payment_provider


def key(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


async def customer_with_card(provider, card: str = "pm_card_visa") -> tuple[str, str]:
    customer = await provider.ensure_customer(user_id=7, email="viewer@example.org", idempotency_key=key("customer"))
    return customer, await provider.attach_payment_method(customer_id=customer, payment_method=card)


async def charge(provider, customer: str, method: str, *, amount: int = 1299, idempotency_key: str | None = None,
                 metadata: dict[str, str] | None = None):
    return await provider.charge(customer_id=customer, payment_method=method, amount=amount, currency="EUR",
                                 metadata=metadata or {"payment_id": "42"},
                                 idempotency_key=idempotency_key or key("payment"), description="Premium, 1 month")


async def test_a_customer_with_an_attached_card_is_charged(provider, sim):
    customer, method = await customer_with_card(provider)
    intent = await charge(provider, customer, method)

    assert customer.startswith("cus_") and method.startswith("pm_") and method != "pm_card_visa"
    assert (intent.status, intent.amount, intent.amount_received, intent.currency) == ("succeeded", 1299, 1299, "eur")
    assert intent.metadata == {"payment_id": "42"} and intent.failure_code is None
    assert await provider.retrieve_intent(intent.id) == intent
    assert [c["id"] for c in sim.control.charges()] == [intent.id]
    default_card = [r for r in sim.control.requests() if r["path"] == f"/v1/customers/{customer}"]
    assert [r["status"] for r in default_card] == [200]


async def test_the_same_customer_key_returns_the_same_customer(provider):
    idempotency_key = key("customer")
    first = await provider.ensure_customer(user_id=3, email="a@example.org", idempotency_key=idempotency_key)
    again = await provider.ensure_customer(user_id=3, email="a@example.org", idempotency_key=idempotency_key)
    assert first == again


@pytest.mark.parametrize(("card", "code"), [("pm_card_chargeDeclined", "card_declined"),
                                            ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
                                            ("pm_card_chargeCustomerFail", "card_declined")])
async def test_a_declined_card_is_a_failed_intent_with_its_code(provider, sim, card, code):
    customer, method = await customer_with_card(provider, card)
    intent = await charge(provider, customer, method)

    assert intent.status in FAILED_STATUSES and intent.failure_code == code and intent.failure_message
    assert intent.amount_received == 0
    assert (await provider.retrieve_intent(intent.id)).failure_code == code
    assert len(sim.control.charges()) == 1


async def test_decline_next_declines_good_cards_then_stops(provider, sim):
    customer, method = await customer_with_card(provider)
    sim.control.behave(decline_next=1, decline_code="expired_card")

    declined = await charge(provider, customer, method)
    paid = await charge(provider, customer, method)

    assert (declined.status, declined.failure_code) == ("requires_payment_method", "expired_card")
    assert paid.status == "succeeded"


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
async def test_a_processing_intent_settles_when_told(provider, sim, outcome):
    customer, method = await customer_with_card(provider)
    sim.control.behave(processing=True)

    intent = await charge(provider, customer, method)
    assert (intent.status, intent.amount_received) == ("processing", 0)
    assert (await provider.retrieve_intent(intent.id)).status == "processing"

    sim.control.settle(intent.id, outcome)
    settled = await provider.retrieve_intent(intent.id)
    if outcome == "succeeded":
        assert (settled.status, settled.amount_received) == ("succeeded", 1299)
    else:
        assert (settled.status, settled.failure_code) == ("requires_payment_method", "card_declined")


async def test_a_processing_intent_settles_by_itself_after_the_delay(provider, sim):
    customer, method = await customer_with_card(provider)
    sim.control.behave(processing=True, settle_after_seconds=0.2)
    intent = await charge(provider, customer, method)
    assert intent.status == "processing"

    for _ in range(200):
        if (await provider.retrieve_intent(intent.id)).status != "processing":
            break
        await asyncio.sleep(0.05)
    assert (await provider.retrieve_intent(intent.id)).status == "succeeded"


async def test_the_same_idempotency_key_charges_once(provider, sim):
    customer, method = await customer_with_card(provider)
    payment_key = key("payment")

    first = await charge(provider, customer, method, idempotency_key=payment_key)
    again = await charge(provider, customer, method, idempotency_key=payment_key)

    assert first == again
    assert len(sim.control.charges()) == 1
    charges = [r for r in sim.control.requests() if r["path"] == "/v1/payment_intents"]
    assert [(r["idempotency_key"], r["replayed"]) for r in charges] == [(payment_key, False), (payment_key, True)]


async def test_the_same_key_with_other_parameters_is_rejected(provider, sim):
    customer, method = await customer_with_card(provider)
    payment_key = key("payment")
    await charge(provider, customer, method, idempotency_key=payment_key)

    with pytest.raises(ProviderRejected) as refused:
        await charge(provider, customer, method, idempotency_key=payment_key, amount=2500)
    assert refused.value.code == "idempotency_error"
    assert len(sim.control.charges()) == 1


async def test_a_declined_charge_replays_as_the_same_decline(provider, sim):
    customer, method = await customer_with_card(provider, "pm_card_chargeDeclined")
    payment_key = key("payment")
    first = await charge(provider, customer, method, idempotency_key=payment_key)
    again = await charge(provider, customer, method, idempotency_key=payment_key)
    assert first == again and first.failure_code == "card_declined"
    assert len(sim.control.charges()) == 1


async def test_a_network_failure_is_unavailable_and_the_retry_charges_once(provider, sim):
    customer, method = await customer_with_card(provider)
    payment_key = key("payment")
    sim.control.behave(fail_next=1)

    with pytest.raises(ProviderUnavailable):
        await charge(provider, customer, method, idempotency_key=payment_key)
    assert sim.control.charges() == []  # the dropped request did not take effect

    intent = await charge(provider, customer, method, idempotency_key=payment_key)
    assert intent.status == "succeeded"
    assert [c["id"] for c in sim.control.charges()] == [intent.id]
    outcomes = [(r["outcome"], r["replayed"]) for r in sim.control.requests() if r["path"] == "/v1/payment_intents"]
    assert outcomes == [("dropped", False), ("answered", False)]


async def test_a_lost_answer_is_unavailable_and_the_retry_replays_the_charge(provider, sim):
    customer, method = await customer_with_card(provider)
    payment_key = key("payment")
    sim.control.behave(drop_answer_next=1)

    with pytest.raises(ProviderUnavailable):
        await charge(provider, customer, method, idempotency_key=payment_key)
    assert len(sim.control.charges()) == 1  # it did take effect

    intent = await charge(provider, customer, method, idempotency_key=payment_key)
    assert [c["id"] for c in sim.control.charges()] == [intent.id]
    assert sim.control.requests()[-1]["replayed"] is True


async def test_the_sdk_retries_a_dropped_connection_with_the_same_key(sim):
    provider = StripeProvider(api_key=sim.API_KEY, api_base=sim.url, max_network_retries=2, timeout=10)
    try:
        customer, method = await customer_with_card(provider)
        payment_key = key("payment")
        sim.control.behave(fail_next=2)
        intent = await charge(provider, customer, method, idempotency_key=payment_key)
    finally:
        await provider.close()

    assert intent.status == "succeeded" and len(sim.control.charges()) == 1
    attempts = [(r["idempotency_key"], r["outcome"]) for r in sim.control.requests() if r["path"] == "/v1/payment_intents"]
    assert attempts == [(payment_key, "dropped"), (payment_key, "dropped"), (payment_key, "answered")]


async def test_a_slow_answer_times_out_as_unavailable(sim):
    provider = StripeProvider(api_key=sim.API_KEY, api_base=sim.url, max_network_retries=0, timeout=0.3)
    try:
        sim.control.behave(delay_ms=2000)
        with pytest.raises(ProviderUnavailable):
            await provider.ensure_customer(user_id=1, email="slow@example.org", idempotency_key=key("customer"))
    finally:
        await provider.close()


async def test_an_unreachable_provider_is_unavailable():
    provider = StripeProvider(api_key="sk_test_vedina_sim", api_base=f"http://127.0.0.1:{free_port()}",
                              max_network_retries=0)
    try:
        with pytest.raises(ProviderUnavailable):
            await provider.retrieve_intent("pi_anything")
    finally:
        await provider.close()


async def test_refunds_partial_then_full_never_above_what_remains(provider):
    customer, method = await customer_with_card(provider)
    intent = await charge(provider, customer, method, amount=1000)

    partial = await provider.refund(intent_id=intent.id, amount=300, metadata={"refund_id": "1"},
                                    idempotency_key=key("refund"))
    assert (partial.intent_id, partial.amount, partial.status, partial.currency) == (intent.id, 300, "succeeded", "eur")
    assert partial.metadata == {"refund_id": "1"}

    with pytest.raises(ProviderRejected) as too_much:
        await provider.refund(intent_id=intent.id, amount=701, metadata={}, idempotency_key=key("refund"))
    assert too_much.value.code == "amount_too_large"

    rest = await provider.refund(intent_id=intent.id, amount=700, metadata={}, idempotency_key=key("refund"))
    assert rest.amount == 700
    with pytest.raises(ProviderRejected) as nothing_left:
        await provider.refund(intent_id=intent.id, amount=1, metadata={}, idempotency_key=key("refund"))
    assert nothing_left.value.code == "charge_already_refunded"


async def test_the_same_refund_key_refunds_once(provider):
    customer, method = await customer_with_card(provider)
    intent = await charge(provider, customer, method, amount=1000)
    refund_key = key("refund")
    first = await provider.refund(intent_id=intent.id, amount=600, metadata={}, idempotency_key=refund_key)
    again = await provider.refund(intent_id=intent.id, amount=600, metadata={}, idempotency_key=refund_key)
    assert first == again
    # Only 600 was refunded, so 400 remain.
    await provider.refund(intent_id=intent.id, amount=400, metadata={}, idempotency_key=key("refund"))


async def test_a_failed_intent_cannot_be_refunded(provider):
    customer, method = await customer_with_card(provider, "pm_card_chargeDeclined")
    intent = await charge(provider, customer, method)
    with pytest.raises(ProviderRejected) as refused:
        await provider.refund(intent_id=intent.id, amount=100, metadata={}, idempotency_key=key("refund"))
    assert refused.value.code == "charge_not_refundable"


async def test_unknown_objects_are_rejected_with_resource_missing(provider):
    customer, _ = await customer_with_card(provider)
    with pytest.raises(ProviderRejected) as unknown_card:
        await charge(provider, customer, "pm_doesnotexist")
    with pytest.raises(ProviderRejected) as unknown_attach:
        await provider.attach_payment_method(customer_id=customer, payment_method="pm_doesnotexist")
    with pytest.raises(ProviderRejected) as unknown_intent:
        await provider.retrieve_intent("pi_doesnotexist")
    assert {unknown_card.value.code, unknown_attach.value.code, unknown_intent.value.code} == {"resource_missing"}


async def test_a_card_of_another_customer_is_rejected(provider, sim):
    _, method = await customer_with_card(provider)
    other, _ = await customer_with_card(provider)
    with pytest.raises(ProviderRejected):
        await charge(provider, other, method)
    assert sim.control.charges() == []


async def test_a_key_that_is_not_a_test_key_is_rejected(sim):
    provider = StripeProvider(api_key="sk_live_0123456789abcdefghij", api_base=sim.url, max_network_retries=0)
    try:
        with pytest.raises(ProviderRejected):
            await provider.ensure_customer(user_id=1, email="a@example.org", idempotency_key=key("customer"))
    finally:
        await provider.close()


@pytest.mark.parametrize(("env", "base"), [
    ({}, "http://127.0.0.1:12111"),
    ({"PROVIDER_SIM_PORT": "23456"}, "http://127.0.0.1:23456"),
    ({"STRIPE_API_BASE": "http://127.0.0.1:4000"}, "http://127.0.0.1:4000"),
    ({"PAYMENT_PROVIDER": "stripe", "STRIPE_API_KEY": "sk_test_0123456789abcdefghij",
      "WEBHOOK_SECRETS": "stripe:whsec_0123456789abcdefghijklmnop"}, "https://api.stripe.com"),
])
async def test_build_payment_provider_points_the_adapter_where_the_settings_say(env, base):
    provider = build_payment_provider(load_settings(env))
    try:
        assert (provider.name, provider.api_base) == ("stripe", base)
    finally:
        await provider.close()
