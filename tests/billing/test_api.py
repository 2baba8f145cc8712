"""/api/plans, /api/subscriptions and /api/payments over HTTP on both profiles, end to end:
a live Granian server, `vedina provider-sim` confirming payments by signed webhooks, the
webhook job (in-process embedded, `vedina worker` over RabbitMQ real), and playback."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from tests.billing.conftest import admin, key, make_plans, new_plan, published_movie, run_scheduled
from tests.conftest import PROFILES, query_rows, require_profile, wait_for
from vedina.storage.schema import payments, plans, subscriptions, webhook_events

pytestmark = pytest.mark.slow


@pytest.fixture(params=PROFILES)
def site(request, billing_servers, provider_sim):
    require_profile(request.param)
    server = billing_servers(request.param)
    provider_sim.control.reset()
    provider_sim.control.webhook(f"{server.base_url}/api/webhooks/stripe")
    yield server
    provider_sim.control.reset()


def counts(site) -> tuple[int, int, int]:
    rows = query_rows(site.settings, sa.select(
        sa.select(sa.func.count()).select_from(plans).scalar_subquery().label("plans"),
        sa.select(sa.func.count()).select_from(subscriptions).scalar_subquery().label("subscriptions"),
        sa.select(sa.func.count()).select_from(payments).scalar_subquery().label("payments"),
    ))
    return rows[0]["plans"], rows[0]["subscriptions"], rows[0]["payments"]


def test_subscribe_confirmed_by_a_signed_webhook_then_a_premium_movie_streams(site, provider_sim):
    """The issue's scenario: subscribe -> the provider confirms by signed webhook (delivered twice)
    -> active -> a premium-tier movie streams; the duplicate event is stored and processed once."""
    plan = new_plan(site, "premium")
    movie = site.new_movie(plan_tier="premium")
    token = site.user()
    with site.client(token) as http:
        refused = http.get(f"/api/movies/{movie['id']}/playback")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "plan_required"

        provider_sim.control.behave(processing=True, settle_after_seconds=0.3, duplicate_events=True)
        answer = http.post("/api/subscriptions", json={"plan_id": plan["id"], "payment_method": "pm_card_visa"},
                           headers=key())
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "incomplete" and answer.json()["latest_payment"]["status"] == "processing"

        active = wait_for(lambda: (r := http.get("/api/subscriptions/current").json())["status"] == "active" and r,
                          what="the webhook activating the subscription")
        assert active["plan"]["tier"] == "premium" and active["latest_payment"]["amount_minor"] == 1999

        started = http.get(f"/api/movies/{movie['id']}/playback")
        assert started.status_code == 200, started.text
        url = started.json()["renditions"][0]["url"]
        ranged = http.get(url, headers={"range": "bytes=0-99"})
        assert ranged.status_code == 206 and len(ranged.content) == 100

        history = http.get(f"/api/subscriptions/{active['id']}/history").json()["items"]
        assert [e["event"] for e in history] == ["created", "activated"]
        paid = http.get("/api/payments").json()["items"]
        assert [(p["purpose"], p["status"], p["amount_minor"]) for p in paid] == [("initial", "succeeded", 1999)]

    intent_id = query_rows(site.settings, sa.select(payments.c.intent_id).where(
        payments.c.id == paid[0]["id"]))[0]["intent_id"]
    deliveries = [d for d in provider_sim.control.events()["deliveries"] if d["status"] in (200, 202)]
    succeeded = [e for e in provider_sim.control.events()["data"]
                 if e["type"] == "payment_intent.succeeded" and e["data"]["object"]["id"] == intent_id]
    assert len(succeeded) == 1
    assert sum(d["event_id"] == succeeded[0]["id"] for d in deliveries) == 2  # delivered twice...
    stored = query_rows(site.settings, sa.select(webhook_events.c.id, webhook_events.c.processed_at)
                        .where(webhook_events.c.provider == "stripe", webhook_events.c.event_id == succeeded[0]["id"]))
    assert len(stored) == 1  # ...stored once
    wait_for(lambda: query_rows(site.settings, sa.select(webhook_events.c.processed_at).where(
        webhook_events.c.id == stored[0]["id"]))[0]["processed_at"], what="the event processed")


def test_a_wrong_signature_is_refused_and_stores_nothing(site):
    body = b'{"id":"evt_forged_%s","type":"payment_intent.succeeded","data":{"object":{"id":"pi_x"}}}' % (
        uuid.uuid4().hex.encode())
    with site.client() as http:
        forged = http.post("/api/webhooks/stripe", content=body, headers={
            "content-type": "application/json", "stripe-signature": f"t={int(time.time())},v1={'0' * 64}"})
        assert forged.status_code == 401
        unsigned = http.post("/api/webhooks/stripe", content=body, headers={"content-type": "application/json"})
        assert unsigned.status_code == 401
    assert not query_rows(site.settings, sa.select(webhook_events.c.id).where(
        webhook_events.c.event_type == "payment_intent.succeeded", webhook_events.c.payload.is_not(None),
        webhook_events.c.event_id.like("evt_forged_%")))


def test_two_concurrent_posts_with_one_idempotency_key_make_one_charge(site, provider_sim):
    plan = new_plan(site, "basic")
    token = site.user()
    shared = key()
    provider_sim.control.behave(delay_ms=300)  # both requests are in flight together

    def post():
        with site.client(token) as http:
            return http.post("/api/subscriptions", json={"plan_id": plan["id"], "payment_method": "pm_card_visa"},
                             headers=shared)

    with ThreadPoolExecutor(2) as pool:
        first, second = list(pool.map(lambda _: post(), range(2)))
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json() == second.json()
    assert sorted([first.headers["idempotent-replayed"], second.headers["idempotent-replayed"]]) == ["false", "true"]
    assert len(provider_sim.control.charges()) == 1
    with site.client(token) as http:
        replay = http.post("/api/subscriptions", json={"plan_id": plan["id"], "payment_method": "pm_card_visa"},
                           headers=shared)
        assert replay.status_code == 201 and replay.json() == first.json()
        other = http.post("/api/subscriptions", json={"plan_id": plan["id"], "payment_method": "pm_card_mastercard"},
                          headers=shared)
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(provider_sim.control.charges()) == 1


def test_money_moving_posts_require_an_idempotency_key(site):
    plan = new_plan(site, "basic")
    with site.client(site.user()) as http:
        before = counts(site)
        for headers in ({}, {"idempotency-key": ""}, {"idempotency-key": "x" * 256}, {"idempotency-key": "tab\there"}):
            answer = http.post("/api/subscriptions", json={"plan_id": plan["id"], "payment_method": "pm_card_visa"},
                               headers=headers)
            assert answer.status_code == 400 and answer.json()["error"]["details"]["header"] == "Idempotency-Key"
        assert counts(site) == before


@pytest.mark.parametrize("body,field", [
    (b"{", "body"),
    (b'{"plan_id": "1", "payment_method": "pm_card_visa"}', "plan_id"),
    (b'{"plan_id": 1.5, "payment_method": "pm_card_visa"}', "plan_id"),
    (b'{"plan_id": -1, "payment_method": "pm_card_visa"}', "plan_id"),
    (b'{"plan_id": 1, "payment_method": "<script>alert(1)</script>"}', "payment_method"),
    (b'{"plan_id": 1, "payment_method": "pm_card_visa\' OR 1=1 --"}', "payment_method"),
    (b'{"plan_id": 1, "payment_method": "pm_card_visa", "amount_minor": 1}', "amount_minor"),
])
def test_bad_subscription_bodies_are_4xx_naming_the_field_and_write_nothing(site, body, field):
    with site.client(site.user()) as http:
        before = counts(site)
        answer = http.post("/api/subscriptions", content=body,
                           headers={**key(), "content-type": "application/json"})
        assert answer.status_code in (400, 422), answer.text
        assert answer.json()["error"]["details"]["field"] == field
    assert counts(site) == before


@pytest.mark.parametrize("change,field", [
    ({"price_minor": 9.99}, "price_minor"),
    ({"price_minor": -1}, "price_minor"),
    ({"currency": "USD"}, "currency"),
    ({"tier": "platinum"}, "tier"),
    ({"screens": 0}, "screens"),
    ({"code": "<b>x</b>"}, "code"),
    ({"billing_period": "week"}, "billing_period"),
    ({"code": "basic\n"}, "code"),
    ({"currency": "usd\n"}, "currency"),
    ({"price_minor": 49}, "price_minor"),
])
def test_bad_plans_are_422_and_write_nothing(site, change, field):
    body = {"code": f"bad-{uuid.uuid4().hex[:6]}", "name": "Bad", "tier": "basic", "currency": "usd",
            "price_minor": 100, "screens": 1, "max_height": 720, **change}
    before = counts(site)
    answer = admin(site).post("/api/plans", json=body)
    assert answer.status_code == 422 and answer.json()["error"]["details"]["field"] == field
    assert counts(site) == before


def test_plans_are_admin_managed_versioned_and_public(site):
    plan = new_plan(site, "standard")
    with site.client(site.user()) as viewer:
        assert viewer.post("/api/plans", json={"code": "x"}).status_code == 403
        assert viewer.patch(f"/api/plans/{plan['id']}", json={"price_minor": 1}).status_code == 403
    with site.client() as anonymous:  # the offer is cached per worker; a change reaches each by push
        wait_for(lambda: any(p["id"] == plan["id"] and p["price_minor"] == 1499
                             for p in anonymous.get("/api/plans").json()["items"]), timeout=5, what="the new plan")
        assert anonymous.post("/api/plans", json={"code": "x"}).status_code == 401
    changed = admin(site).patch(f"/api/plans/{plan['id']}", json={"price_minor": 1599, "name": "Standard+"})
    assert changed.status_code == 200 and changed.json()["version"] == 2 and changed.json()["name"] == "Standard+"
    renamed = admin(site).patch(f"/api/plans/{plan['id']}", json={"name": "Standard"})
    assert renamed.json()["version"] == 2  # a new name is not new terms
    admin(site).patch(f"/api/plans/{plan['id']}", json={"active": False})
    with site.client() as anonymous:
        wait_for(lambda: anonymous.get(f"/api/plans/{plan['id']}").status_code == 404, timeout=5,
                 what="the withdrawn plan gone from every worker")


def test_payments_are_private_and_refunds_are_for_admins_within_what_was_paid(site, provider_sim):
    plan = new_plan(site, "standard")
    owner, stranger = site.user(), site.user()
    with site.client(owner) as http:
        made = http.post("/api/subscriptions", json={"plan_id": plan["id"], "payment_method": "pm_card_visa"},
                         headers=key())
        assert made.status_code == 201, made.text
        payment_id = made.json()["latest_payment"]["id"]
        assert http.get(f"/api/payments/{payment_id}").status_code == 200
        assert http.post(f"/api/payments/{payment_id}/refunds", json={"reason": "me"}, headers=key()).status_code == 403
    with site.client(stranger) as http:
        assert http.get(f"/api/payments/{payment_id}").status_code == 404
        assert http.get(f"/api/subscriptions/{made.json()['id']}").status_code == 404
        assert http.get(f"/api/subscriptions/{made.json()['id']}/history").status_code == 404
    boss = admin(site)
    partial = boss.post(f"/api/payments/{payment_id}/refunds", json={"amount_minor": 499, "reason": "outage credit"},
                        headers=key())
    assert partial.status_code == 201 and partial.json()["refunded_minor"] == 499
    too_much = boss.post(f"/api/payments/{payment_id}/refunds", json={"amount_minor": 1001, "reason": "x"},
                         headers=key())
    assert too_much.status_code == 422 and too_much.json()["error"]["details"]["refundable_minor"] == 1000
    rest = boss.post(f"/api/payments/{payment_id}/refunds", json={"reason": "cancelled"}, headers=key())
    assert rest.status_code == 201 and rest.json()["refunded_minor"] == 1499
    assert [r["amount_minor"] for r in rest.json()["refunds"]] == [499, 1000]
    float_amount = boss.post(f"/api/payments/{payment_id}/refunds", json={"amount_minor": 1.5, "reason": "x"},
                             headers=key())
    assert float_amount.status_code == 422 and float_amount.json()["error"]["details"]["field"] == "amount_minor"


def test_cancel_resume_and_a_declined_upgrade_over_http(site, provider_sim):
    basic, premium = new_plan(site, "basic"), new_plan(site, "premium")
    with site.client(site.user()) as http:
        assert http.get("/api/subscriptions/current").status_code == 404
        assert http.post("/api/subscriptions", json={"plan_id": basic["id"], "payment_method": "pm_card_visa"},
                         headers=key()).status_code == 201
        again = http.post("/api/subscriptions", json={"plan_id": basic["id"]}, headers=key())
        assert again.status_code == 409 and again.json()["error"]["code"] == "subscription_exists"
        provider_sim.control.behave(decline_next=1)
        declined = http.post("/api/subscriptions/current/change", json={"plan_id": premium["id"]}, headers=key())
        assert declined.status_code == 402 and declined.json()["error"]["code"] == "payment_declined"
        assert http.get("/api/subscriptions/current").json()["plan"]["tier"] == "basic"
        upgraded = http.post("/api/subscriptions/current/change", json={"plan_id": premium["id"]}, headers=key())
        assert upgraded.status_code == 200 and upgraded.json()["plan"]["tier"] == "premium"
        cancelled = http.post("/api/subscriptions/current/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["cancel_at_period_end"] is True
        assert http.post("/api/subscriptions/current/resume").json()["cancel_at_period_end"] is False
        ended = http.post("/api/subscriptions/current/cancel", json={"at_once": True})
        assert ended.json()["status"] == "canceled"
        assert http.get("/api/subscriptions/current").status_code == 404


def test_guarded_billing_routes_refuse_anonymous_callers(site):
    with site.client() as http:
        for method, path in [("GET", "/api/subscriptions"), ("POST", "/api/subscriptions"),
                             ("GET", "/api/subscriptions/current"), ("POST", "/api/subscriptions/current/cancel"),
                             ("POST", "/api/subscriptions/current/resume"), ("POST", "/api/subscriptions/current/change"),
                             ("GET", "/api/subscriptions/1"), ("GET", "/api/subscriptions/1/history"),
                             ("GET", "/api/payments"), ("GET", "/api/payments/1"), ("POST", "/api/payments/1/refunds"),
                             ("POST", "/api/plans"), ("PATCH", "/api/plans/1")]:
            assert http.request(method, path, headers=key()).status_code == 401, (method, path)


def test_a_plan_s_quality_holds_for_signed_urls_and_for_credentials(site, provider_sim):
    """A 240p plan is offered the 240p renditions only, and its credentials cannot fetch a
    1080p rendition of the movie it is watching either."""
    from vedina.storage.schema import media_assets

    plan = new_plan(site, "premium", max_height=240)
    movie = site.new_movie(plan_tier="premium")

    async def add_hd(conn):
        source = (await conn.execute(sa.select(media_assets).where(media_assets.c.id == movie["video"]))).mappings().one()
        copy = {k: v for k, v in source.items() if k not in ("id", "parent_id")}
        result = await conn.execute(sa.insert(media_assets).values(**{**copy, "kind": "rendition", "label": "1080p",
                                                                       "height": 1080, "width": 1920}))
        return result.inserted_primary_key[0]

    hd = site.run(add_hd)
    with site.client(site.user()) as http:
        assert http.post("/api/subscriptions", json={"plan_id": plan["id"], "payment_method": "pm_card_visa"},
                         headers=key()).status_code == 201
        started = http.get(f"/api/movies/{movie['id']}/playback")
        assert started.status_code == 200, started.text
        offered = {r["asset_id"]: r["height"] for r in started.json()["renditions"]}
        assert hd not in offered and offered and all(h <= 240 for h in offered.values())
        assert http.get(f"/api/media/{movie['video']}", headers={"range": "bytes=0-9"}).status_code == 206
        above = http.get(f"/api/media/{hd}", headers={"range": "bytes=0-9"})
        assert above.status_code == 403 and above.json()["error"]["code"] == "plan_required"


@pytest.mark.parametrize("cursor", ["abc", "-1", "0", "1.5", "²", "99999999999999999999", "1 OR 1=1"])
def test_a_bad_payments_cursor_is_422(site, cursor):
    with site.client(site.user()) as http:
        answer = http.get("/api/payments", params={"cursor": cursor})
        assert answer.status_code == 422 and answer.json()["error"]["details"]["field"] == "cursor"


def _play(http, movie_id: int, device: str = "tv"):
    return http.get(f"/api/movies/{movie_id}/playback", params={"device_id": device, "device_name": device})


def test_a_subscribed_plan_s_screens_are_the_stream_limit_over_http(site):
    """PLAYBACK_DEFAULT_PLAN=none and MAX_CONCURRENT_STREAMS=2: a 3-screen plan lets three devices
    stream, the fourth is 409 too_many_streams listing the three."""
    plan = new_plan(site, "standard", screens=3)
    movie = site.new_movie(plan_tier="standard")
    with site.client(site.user()) as http:
        made = http.post("/api/subscriptions", json={"plan_id": plan["id"], "payment_method": "pm_card_visa"},
                         headers=key())
        assert made.status_code == 201 and made.json()["status"] == "active", made.text
        for device in ("tv", "phone", "tablet"):
            opened = _play(http, movie["id"], device)
            assert opened.status_code == 200, opened.text
        refused = _play(http, movie["id"], "laptop")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "too_many_streams"
        details = refused.json()["error"]["details"]
        assert details["limit"] == 3 and sorted(s["device"] for s in details["active"]) == ["phone", "tablet", "tv"]
        assert _play(http, movie["id"], "tv").status_code == 200  # a device reopening is not one more stream
        listed = http.get("/api/playback/sessions").json()
        assert listed["limit"] == 3 and len(listed["items"]) == 3


def test_a_repeated_idempotency_key_on_a_plan_change_and_on_a_refund_returns_the_first_answer(site, provider_sim):
    basic, standard, premium = new_plan(site, "basic"), new_plan(site, "standard"), new_plan(site, "premium")
    with site.client(site.user()) as http:
        made = http.post("/api/subscriptions", json={"plan_id": basic["id"], "payment_method": "pm_card_visa"},
                         headers=key())
        assert made.status_code == 201, made.text

        declined_key = key()  # an error is an answer too: replayed, not charged again
        provider_sim.control.behave(decline_next=1)
        declined = http.post("/api/subscriptions/current/change", json={"plan_id": standard["id"]},
                             headers=declined_key)
        assert declined.status_code == 402, declined.text
        again = http.post("/api/subscriptions/current/change", json={"plan_id": standard["id"]}, headers=declined_key)
        assert (again.status_code, again.json(), again.headers["idempotent-replayed"]) == (402, declined.json(), "true")
        assert len(provider_sim.control.charges()) == 2  # the first payment and the declined upgrade

        change_key = key()
        first = http.post("/api/subscriptions/current/change", json={"plan_id": premium["id"]}, headers=change_key)
        assert first.status_code == 200 and first.headers["idempotent-replayed"] == "false", first.text
        replay = http.post("/api/subscriptions/current/change", json={"plan_id": premium["id"]}, headers=change_key)
        assert (replay.status_code, replay.json(), replay.headers["idempotent-replayed"]) == (200, first.json(), "true")
        other = http.post("/api/subscriptions/current/change", json={"plan_id": basic["id"]}, headers=change_key)
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
        current = http.get("/api/subscriptions/current").json()
        assert current["plan"]["tier"] == "premium" and current["pending_plan"] is None  # no downgrade scheduled
        assert len(provider_sim.control.charges()) == 3
        history = http.get(f"/api/subscriptions/{current['id']}/history").json()["items"]
        assert [e["event"] for e in history].count("upgraded") == 1, [e["event"] for e in history]

    payment_id = made.json()["latest_payment"]["id"]
    refund_key = key()
    boss = admin(site)
    refunded = boss.post(f"/api/payments/{payment_id}/refunds", json={"amount_minor": 300, "reason": "credit"},
                         headers=refund_key)
    assert refunded.status_code == 201 and refunded.json()["refunded_minor"] == 300, refunded.text
    replayed = boss.post(f"/api/payments/{payment_id}/refunds", json={"amount_minor": 300, "reason": "credit"},
                         headers=refund_key)
    assert (replayed.status_code, replayed.json(), replayed.headers["idempotent-replayed"]) == (
        201, refunded.json(), "true")
    other = boss.post(f"/api/payments/{payment_id}/refunds", json={"amount_minor": 301, "reason": "credit"},
                      headers=refund_key)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    after = boss.get(f"/api/payments/{payment_id}").json()
    assert after["refunded_minor"] == 300 and [r["amount_minor"] for r in after["refunds"]] == [300]
    assert len([r for r in provider_sim.control.requests() if r["path"] == "/v1/refunds" and r["status"] == 200]) == 1


def test_payment_history_pages_by_next_cursor_through_every_payment_once(site, provider_sim):
    plan = new_plan(site, "basic")
    with site.client(site.user()) as http:
        for n in range(5):  # a payment each: subscribe, end it at once, subscribe again
            if n == 2:
                provider_sim.control.behave(decline_next=1)  # a failed payment is history too
                declined = http.post("/api/subscriptions", json={"plan_id": plan["id"],
                                                                 "payment_method": "pm_card_visa"}, headers=key())
                assert declined.status_code == 402, declined.text
                continue
            made = http.post("/api/subscriptions", json={"plan_id": plan["id"], "payment_method": "pm_card_visa"},
                             headers=key())
            assert made.status_code == 201, made.text
            if n == 0:
                first_page = http.get("/api/payments", params={"limit": 2}).json()  # cached: must not go stale
            assert http.post("/api/subscriptions/current/cancel", json={"at_once": True}).status_code == 200
        everything = http.get("/api/payments", params={"limit": 100}).json()
        assert everything["next_cursor"] is None and len(everything["items"]) == 5
        ids = [p["id"] for p in everything["items"]]
        assert ids == sorted(ids, reverse=True)  # newest first
        assert [p["status"] for p in everything["items"]].count("failed") == 1
        assert len(first_page["items"]) == 1 and first_page["next_cursor"] is None

        walked, pages, params = [], [], {"limit": 2}
        while True:
            page = http.get("/api/payments", params=params)
            assert page.status_code == 200, page.text
            pages.append(len(page.json()["items"]))
            walked += [p["id"] for p in page.json()["items"]]
            if page.json()["next_cursor"] is None:
                break
            params = {"limit": 2, "cursor": page.json()["next_cursor"]}
            assert len(pages) < 10, "the cursor does not advance"
        assert walked == ids and pages == [2, 2, 1]


async def test_renewal_and_a_declined_renewal_run_by_the_scheduled_tasks_then_playback_is_plan_required(
        billing, billing_site, provider_sim):
    """billing.renewals charges and extends; a declined one -> past_due (still streaming: grace) ->
    the retry declined too -> billing.expiries ends it -> the movie is 403 plan_required over HTTP."""
    plans = await make_plans(billing)
    movie = await published_movie(billing, plan_tier="premium")
    with billing_site.client(billing_site.user()) as http:
        made = http.post("/api/subscriptions", json={"plan_id": plans["premium"], "payment_method": "pm_card_visa"},
                         headers=key())
        assert made.status_code == 201 and made.json()["status"] == "active", made.text
        first = made.json()
        assert _play(http, movie).status_code == 200

        billing.clock.advance(days=32)
        await run_scheduled(billing, "billing.renewals")
        renewed = http.get("/api/subscriptions/current").json()
        assert renewed["status"] == "active" and renewed["current_period_start"] == first["current_period_end"]
        assert renewed["current_period_end"] > first["current_period_end"]
        assert [(p["purpose"], p["status"], p["amount_minor"]) for p in http.get("/api/payments").json()["items"]] == [
            ("renewal", "succeeded", 1999), ("initial", "succeeded", 1999)]
        assert _play(http, movie).status_code == 200

        billing.clock.advance(days=32)
        provider_sim.control.behave(decline_next=2)
        await run_scheduled(billing, "billing.renewals")
        assert http.get("/api/subscriptions/current").json()["status"] == "past_due"
        assert _play(http, movie).status_code == 200  # PAST_DUE_GRACE_DAYS
        await run_scheduled(billing, "billing.expiries")  # not past the grace yet
        assert http.get("/api/subscriptions/current").json()["status"] == "past_due"
        billing.clock.advance(days=1, seconds=1)
        await run_scheduled(billing, "billing.renewals")  # the retry, declined again
        billing.clock.advance(days=7)
        await run_scheduled(billing, "billing.expiries")
        assert http.get("/api/subscriptions/current").status_code == 404
        refused = _play(http, movie)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "plan_required", refused.text
        history = http.get(f"/api/subscriptions/{first['id']}/history").json()["items"]
        assert [e["event"] for e in history] == [
            "created", "activated", "renewed", "payment_failed", "payment_failed", "expired"]
    assert [(c["amount"], c["status"]) for c in provider_sim.control.charges()] == [
        (1999, "succeeded"), (1999, "succeeded"), (1999, "requires_payment_method"), (1999, "requires_payment_method")]


async def test_a_cancel_at_period_end_streams_until_the_period_ends_then_plan_required(billing, billing_site,
                                                                                         provider_sim):
    plans = await make_plans(billing)
    movie = await published_movie(billing, plan_tier="standard")
    with billing_site.client(billing_site.user()) as http:
        made = http.post("/api/subscriptions", json={"plan_id": plans["standard"], "payment_method": "pm_card_visa"},
                         headers=key())
        assert made.status_code == 201, made.text
        cancelled = http.post("/api/subscriptions/current/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["cancel_at_period_end"] is True
        assert _play(http, movie).status_code == 200  # pending: the period is paid

        billing.clock.advance(days=27)  # every month is longer: still inside the period
        await run_scheduled(billing, "billing.renewals")
        await run_scheduled(billing, "billing.expiries")
        assert http.get("/api/subscriptions/current").json()["status"] == "active"
        assert _play(http, movie, "phone").status_code == 200

        billing.clock.advance(days=5)  # past the period's end
        await run_scheduled(billing, "billing.renewals")
        refused = _play(http, movie, "laptop")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "plan_required", refused.text
        assert http.get(f"/api/subscriptions/{made.json()['id']}").json()["status"] == "canceled"
    assert [c["amount"] for c in provider_sim.control.charges()] == [1499]  # never renewed
