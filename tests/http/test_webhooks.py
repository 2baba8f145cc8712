"""Inbound signed webhooks: verified in Rust, stored once, processed by a job, on both profiles."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
import sqlalchemy as sa

from tests.conftest import PROFILES
from vedina.composition import build_services
from vedina.errors import BadRequest, NotFound, Unauthorized, ValidationFailed
from vedina.services.webhooks import WebhookService, signature_header
from vedina.storage.broker import InProcessBroker
from vedina.storage.outbox import OutboxRelay
from vedina.storage.schema import webhook_events
from vedina.storage.webhooks import WebhookEventRepository

CURRENT, PREVIOUS = b"whsec_current_0123456789abcdef", b"whsec_previous_0123456789abcdef"


def event(event_id: str = "evt_1", **extra) -> bytes:
    return orjson.dumps({"id": event_id, "type": "payment.succeeded", "data": {"amount": 999}, **extra})


@pytest.fixture
def service(resources):
    return WebhookService(WebhookEventRepository(resources.engine), {"simpay": [CURRENT, PREVIOUS]})


async def stored(resources) -> list[dict]:
    async with resources.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(sa.select(webhook_events))).mappings().all()]


async def test_signed_event_is_stored_once_and_processed_once(resources, service):
    body = event()
    receipt = await service.receive(provider="simpay", signature=signature_header(CURRENT, body), body=body)
    assert receipt.status == "accepted"
    again = await service.receive(provider="simpay", signature=signature_header(CURRENT, body), body=body)
    assert again.status == "duplicate"
    rows = await stored(resources)
    assert len(rows) == 1 and rows[0]["event_type"] == "payment.succeeded" and rows[0]["processed_at"] is None

    relay = OutboxRelay(resources.engine, InProcessBroker(build_services(resources.settings, resources).job_handlers()))
    assert await relay.relay_once() == 1
    assert (await stored(resources))[0]["processed_at"] is not None


async def test_previous_secret_still_verifies_during_rotation(resources, service):
    body = event("evt_rotated")
    receipt = await service.receive(provider="simpay", signature=signature_header(PREVIOUS, body), body=body)
    assert receipt.status == "accepted"


@pytest.mark.parametrize(
    ("make_signature", "error"),
    [
        (lambda body: None, Unauthorized),
        (lambda body: signature_header(b"whsec_wrong_secret_000000000000", body), Unauthorized),
        (lambda body: signature_header(CURRENT, body + b" "), Unauthorized),
        (lambda body: signature_header(CURRENT, body, timestamp=int(time.time()) - 301), Unauthorized),
        (lambda body: "v1=deadbeef", BadRequest),
        (lambda body: "t=abc,v1=zz", BadRequest),
    ],
    ids=["missing", "wrong-secret", "tampered-body", "stale", "no-timestamp", "garbage"],
)
async def test_bad_signatures_are_refused_and_nothing_is_stored(resources, service, make_signature, error):
    body = event("evt_bad")
    with pytest.raises(error):
        await service.receive(provider="simpay", signature=make_signature(body), body=body)
    assert await stored(resources) == []


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"{not json", BadRequest), (b'{"type": "x"}', ValidationFailed), (b'{"id": 5, "type": "x"}', ValidationFailed),
     (b'{"id": "", "type": "x"}', ValidationFailed), (b'[1, 2]', ValidationFailed),
     # Pathological but signed (issue 8, item 3): 4xx, never a 500.
     (b'{"id": "evt_deep", "type": "x", "data": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}", BadRequest),
     (b'{"id": "evt_deep2", "type": "x", "data": ' + b"[" * 65 + b"]" * 65 + b"}", BadRequest),
     (b'{"id": "evt_big", "type": "x", "data": {}, "n": 1e999999}', BadRequest)],
    ids=["not-json", "no-id", "id-type", "empty-id", "array", "nested-5000", "nested-65", "number-out-of-range"],
)
async def test_signed_but_malformed_events_are_4xx_and_not_stored(resources, service, body, error):
    with pytest.raises(error):
        await service.receive(provider="simpay", signature=signature_header(CURRENT, body), body=body)
    assert await stored(resources) == []


async def test_unknown_provider_is_404(service):
    body = event()
    with pytest.raises(NotFound):
        await service.receive(provider="other", signature=signature_header(CURRENT, body), body=body)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("server", ["granian", "robyn"])
def test_webhook_endpoint_over_http(live_servers, server, profile):
    live = live_servers(server, profile)
    body = event(f"evt_http_{server}_{time.time_ns()}")
    url = f"{live.base_url}/api/webhooks/simpay"
    headers = {"content-type": "application/json"}
    accepted = httpx.post(url, content=body, headers={**headers, "vedina-signature": signature_header(CURRENT, body)})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "accepted"
    duplicate = httpx.post(url, content=body, headers={**headers, "vedina-signature": signature_header(CURRENT, body)})
    assert duplicate.status_code == 200 and duplicate.json()["status"] == "duplicate"
    forged = httpx.post(url, content=body, headers={**headers, "vedina-signature": signature_header(b"x" * 30, body)})
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "unauthorized"
    other = event(f"evt_text_{server}_{time.time_ns()}")
    as_text = httpx.post(url, content=other, headers={"vedina-signature": signature_header(CURRENT, other),
                                                        "content-type": "text/plain"})
    assert as_text.status_code == 415 and as_text.json()["error"]["code"] == "unsupported_media_type"
    deep = b'{"id": "evt_deep_http", "type": "x", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    refused = httpx.post(url, content=deep, headers={"vedina-signature": signature_header(CURRENT, deep),
                                                      "content-type": "application/json"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_request"


async def test_event_ids_differing_only_in_case_are_two_events(resources, service):
    for event_id in ("EvtCase", "evtcase"):
        body = event(event_id)
        receipt = await service.receive(provider="simpay", signature=signature_header(CURRENT, body), body=body)
        assert receipt.status == "accepted"
    assert len(await stored(resources)) == 2
