"""/api/subscriptions: the caller's subscription (subscribe, cancel, resume, change plan) and its history."""

from __future__ import annotations

from typing import Annotated

import msgspec
from robyn import Request, SubRouter

from vedina.api.bodies import decode_body
from vedina.api.params import path_int
from vedina.http.auth import account_id_of, principal_of, requires
from vedina.http.idempotency import idempotent
from vedina.http.operation import doc
from vedina.http.responses import json_response
from vedina.services.subscriptions import SubscriptionHistory, SubscriptionList, SubscriptionPublic
from vedina.state import AppState

PlanId = Annotated[int, msgspec.Meta(ge=1, le=2**53)]
# A payment method from the provider's client-side card form (Stripe: pm_...).
PaymentMethod = Annotated[str, msgspec.Meta(min_length=4, max_length=100, pattern=r"^pm_[A-Za-z0-9_]+\Z")]


class SubscriptionCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    plan_id: PlanId
    payment_method: PaymentMethod | None = None  # required unless the account has one on file


class PlanChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    plan_id: PlanId


class Cancel(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    at_once: bool = False  # default: at the period's end (access until then)


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    def idempotency():
        return state.services.idempotency

    def me_id(request: Request) -> int:
        return account_id_of(request, what="subscriptions")

    def owner_filter(request: Request) -> int | None:
        """Admins (billing:manage) read any account's; others only their own (another's is 404)."""
        principal = principal_of(request)
        return None if "billing:manage" in principal.permissions else me_id(request)

    @router.get("/", openapi_name="My subscriptions, newest first")
    @doc(answers={200: SubscriptionList})
    @requires("account:self", csrf_tokens=csrf)
    async def list_subscriptions(request: Request):
        return json_response(await state.services.subscriptions.list(user_id=me_id(request)))

    @router.post("/", openapi_name="Subscribe to a plan (Idempotency-Key required)")
    @doc(body=SubscriptionCreate, headers=("Idempotency-Key",), required=("Idempotency-Key",),
         answers={201: SubscriptionPublic, 202: SubscriptionPublic},
         errors=("402 payment_declined", "404 not_found", "409 subscription_exists"))
    @requires("account:self", csrf_tokens=csrf)
    @idempotent(idempotency)
    async def subscribe(request: Request):
        """201 when paid (or trialing), 202 while the first payment is processing, 402
        ``payment_declined``, 409 ``subscription_exists``."""
        body = decode_body(request, SubscriptionCreate)
        user_id = me_id(request)
        account = await state.services.accounts.get(user_id=user_id)
        subscription, settled = await state.services.subscriptions.subscribe(
            user_id=user_id, email=account.email, plan_id=body.plan_id, payment_method=body.payment_method,
        )
        return json_response(subscription, status=201 if settled else 202)

    @router.get("/current", openapi_name="My live subscription")
    @doc(answers={200: SubscriptionPublic}, errors=("404 not_found",))
    @requires("account:self", csrf_tokens=csrf)
    async def current(request: Request):
        return json_response(await state.services.subscriptions.current(user_id=me_id(request)))

    @router.post("/current/cancel", openapi_name="Cancel at the period's end (or at once)")
    @doc(body=Cancel, body_optional=True, answers={200: SubscriptionPublic},
         errors=("404 not_found", "409 already_canceled", "409 subscription_state_changed"))
    @requires("account:self", csrf_tokens=csrf)
    async def cancel(request: Request):
        body = decode_body(request, Cancel, optional=True) or Cancel()
        return json_response(await state.services.subscriptions.cancel(user_id=me_id(request), at_once=body.at_once))

    @router.post("/current/resume", openapi_name="Undo a cancellation before the period ends")
    @doc(answers={200: SubscriptionPublic},
         errors=("404 not_found", "409 not_canceled", "409 subscription_state_changed"))
    @requires("account:self", csrf_tokens=csrf)
    async def resume(request: Request):
        return json_response(await state.services.subscriptions.resume(user_id=me_id(request)))

    @router.post("/current/change", openapi_name="Change plan (Idempotency-Key required)")
    @doc(body=PlanChange, headers=("Idempotency-Key",), required=("Idempotency-Key",),
         answers={200: SubscriptionPublic, 202: SubscriptionPublic},
         errors=("402 payment_declined", "404 not_found", "409 plan_change_in_progress", "409 same_plan",
                 "409 subscription_not_active", "409 subscription_state_changed"))
    @requires("account:self", csrf_tokens=csrf)
    @idempotent(idempotency)
    async def change(request: Request):
        """An upgrade takes effect at once and charges the prorated difference (202 while it
        processes, 402 if declined); a downgrade takes effect at the period's end."""
        body = decode_body(request, PlanChange)
        subscription, settled = await state.services.subscriptions.change_plan(user_id=me_id(request),
                                                                              plan_id=body.plan_id)
        return json_response(subscription, status=200 if settled else 202)

    @router.get("/:id", openapi_name="Get a subscription")
    @doc(answers={200: SubscriptionPublic})
    @requires("account:self", csrf_tokens=csrf)
    async def get_subscription(request: Request):
        return json_response(await state.services.subscriptions.get(
            subscription_id=path_int(request, "id"), user_id=owner_filter(request)))

    @router.get("/:id/history", openapi_name="A subscription's transitions, oldest first")
    @doc(answers={200: SubscriptionHistory})
    @requires("account:self", csrf_tokens=csrf)
    async def history(request: Request):
        return json_response(await state.services.subscriptions.history(
            subscription_id=path_int(request, "id"), user_id=owner_filter(request)))
