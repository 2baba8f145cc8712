"""RabbitMQ stopped while a customer subscribes (real profile): the provider's signed
confirmation is stored at once, its processing job waits in the outbox, and when the
broker is back the subscription becomes active, with the event processed once."""

from __future__ import annotations

import shutil
import time

import pytest
import sqlalchemy as sa

from tests.billing.conftest import key, new_plan
from tests.conftest import query_rows, require_profile, wait_for
from tests.reliability.test_outages import rabbitmqctl
from vedina.storage.schema import subscription_events, webhook_events

pytestmark = pytest.mark.slow


def test_a_broker_outage_while_subscribing_loses_no_payment_event(billing_servers, provider_sim):
    require_profile("real")
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is needed (scripts/services.sh installs RabbitMQ)")
    site = billing_servers("real")
    plan = new_plan(site, "standard")
    provider_sim.control.reset()
    provider_sim.control.webhook(f"{site.base_url}/api/webhooks/stripe")
    provider_sim.control.behave(processing=True, settle_after_seconds=0.5)
    with site.client(site.user()) as http:
        rabbitmqctl("stop_app")
        try:
            answer = http.post("/api/subscriptions", json={"plan_id": plan["id"], "payment_method": "pm_card_visa"},
                               headers=key())
            assert answer.status_code == 202, answer.text
            subscription_id = answer.json()["id"]
            wait_for(lambda: any(d["status"] == 202 for d in provider_sim.control.events()["deliveries"]),
                     what="the signed confirmation accepted while the broker is down")
            time.sleep(2)
            assert http.get("/api/subscriptions/current").json()["status"] == "incomplete"
        finally:
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup")
        wait_for(lambda: http.get("/api/subscriptions/current").json()["status"] == "active", timeout=90,
                 what="the subscription active once the broker is back")
    events = query_rows(site.settings, sa.select(subscription_events.c.event).where(
        subscription_events.c.subscription_id == subscription_id).order_by(subscription_events.c.id))
    assert [e["event"] for e in events] == ["created", "activated"]
    succeeded = [e["id"] for e in provider_sim.control.events()["data"] if e["type"] == "payment_intent.succeeded"]
    stored = query_rows(site.settings, sa.select(webhook_events.c.processed_at).where(
        webhook_events.c.provider == "stripe", webhook_events.c.event_id.in_(succeeded)))
    assert len(stored) == 1 and stored[0]["processed_at"] is not None
    provider_sim.control.reset()
