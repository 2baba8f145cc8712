"""``vedina provider-sim``: the part of Stripe's API that Vedina's adapter calls, on loopback.

The real ``stripe`` SDK talks HTTP to it unchanged (point its API base at
``http://127.0.0.1:<PROVIDER_SIM_PORT>``): form-encoded bodies, Stripe's JSON objects
and error shape, API-key auth (any ``sk_test_...`` key), ``Idempotency-Key`` with
``Idempotent-Replayed: true`` replays. It delivers signed events
(``Stripe-Signature: t=..,v1=..``) to one webhook URL, in the background, with retries.
Tests and the embedded profile use it; production uses Stripe (see
``vedina.storage.stripe_provider``). State is in memory and lost on exit.

Modules: ``forms`` (request bodies), ``state`` (objects and rules), ``stripe_api``
(routes), ``events`` (event log and webhook sender), ``behaviours`` (what it is told
to do), ``http`` (the asyncio HTTP server), ``app`` (the request pipeline and
``run``), ``control`` (the ``/_sim/`` endpoints) and ``client`` (their Python client).

Control API (JSON, no API key)::

    GET  /_sim/health                   {"ok": true, "simulator": "vedina-provider-sim"}
    GET  /_sim/behaviour                the current behaviour
    POST /_sim/behaviour                change some of it; answers the whole:
         decline_next: N                   the next N charges decline, whatever the card
         decline_code: "card_declined"     ... with this code (insufficient_funds, expired_card, ...)
         processing: bool                  new intents answer "processing" and settle later
         settle_after_seconds: s | null    ... by themselves after s seconds (null: only via /settle)
         settle_outcome: "succeeded"|"failed"   ... how they settle by themselves
         fail_next: N                      the next N API requests: connection closed before
                                           they take effect (a network failure, to the SDK)
         drop_answer_next: N               the next N API requests take effect, then the
                                           connection is closed (the answer is lost)
         delay_ms: N                       every API answer waits N ms
         duplicate_events: bool            every event delivered twice
         hold_events: bool                 events wait for POST /_sim/deliver
         webhook_attempts: N (4)           delivery attempts per event (non-2xx is retried)
         webhook_retry_seconds: s (0.2)    first back-off, doubled after each failure
    GET  /_sim/webhook                  {"url": ..., "secret_set": bool}
    POST /_sim/webhook                  {"url": "http://..." | null, "secret": "whsec_..."?}
    POST /_sim/deliver                  {"order": "created" | "reverse"}: send the held events
    POST /_sim/intents/{id}/settle      {"outcome": "succeeded" | "failed", "code"?: "card_declined"}
    GET  /_sim/requests                 {"data": [{method, path, idempotency_key, replayed,
                                                   status, outcome: answered|dropped|answer_dropped}]}
    GET  /_sim/charges                  {"data": [payment intents created, as they are now]}
    GET  /_sim/events                   {"data": [events], "held": [ids], "deliveries": [{event_id,
                                                   type, attempt, status, error}]}
    POST /_sim/reset                    {"objects": false}: behaviour, webhook target (back to the
                                        command line's), logs and held events; with "objects": true
                                        also every customer, intent, refund and idempotency key

``/_sim/requests``, ``/_sim/charges`` and ``/_sim/events`` cover the time since the
last reset; the objects themselves outlive a plain reset (a live server's database
may still refer to them).

Events: ``payment_intent.succeeded``, ``payment_intent.payment_failed``,
``payment_intent.processing``, ``refund.created`` and ``charge.refunded``.

Test payment methods: ``pm_card_visa``, ``pm_card_mastercard`` (succeed),
``pm_card_chargeDeclined`` (``card_declined``), ``pm_card_chargeDeclinedInsufficientFunds``
(``card_declined`` with ``decline_code`` ``insufficient_funds``), ``pm_card_chargeCustomerFail``.
"""

from vedina.provider_sim.app import Simulator, run
from vedina.provider_sim.client import SimControl

__all__ = ["SimControl", "Simulator", "run"]
