"""/api/payments: the caller's payment history and receipts; refunds by admins."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from robyn import Request, SubRouter

from vedina.api.bodies import decode_body
from vedina.api.params import path_int, query_int
from vedina.errors import ValidationFailed
from vedina.http.auth import account_id_of, principal_of, requires
from vedina.http.idempotency import idempotent
from vedina.http.operation import doc, limit
from vedina.http.responses import json_response
from vedina.services.payments import PaymentPage, PaymentPublic
from vedina.state import AppState

_CURSOR = re.compile(r"[1-9][0-9]{0,17}")  # a payment id, as next_cursor gives it
Amount = Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]  # integer minor units
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+\Z")]


class RefundCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    amount_minor: Amount | None = None  # omitted: everything not refunded yet
    reason: Reason


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    def me_id(request: Request) -> int:
        return account_id_of(request, what="payments")

    @router.get("/", openapi_name="My payments, newest first")
    @doc(query={"cursor": str, "limit": limit(100)}, answers={200: PaymentPage})
    @requires("account:self", csrf_tokens=csrf)
    async def list_payments(request: Request):
        """``?cursor=`` from ``next_cursor`` for the next page; ``?limit=`` 1-100."""
        raw = request.query_params.get("cursor", None)
        if raw is not None and not _CURSOR.fullmatch(raw):
            raise ValidationFailed("cursor must come from next_cursor", details={"field": "cursor"})
        page = await state.services.payments.history(
            user_id=me_id(request), before_id=int(raw) if raw else None,
            limit=query_int(request, "limit", default=20, minimum=1, maximum=100),
        )
        return json_response(page)

    @router.get("/:id", openapi_name="Get a payment with its refunds")
    @doc(answers={200: PaymentPublic})
    @requires("account:self", csrf_tokens=csrf)
    async def get_payment(request: Request):
        principal = principal_of(request)
        owner = None if "billing:manage" in principal.permissions else me_id(request)
        return json_response(await state.services.payments.get(payment_id=path_int(request, "id"), user_id=owner))

    @router.post("/:id/refunds", openapi_name="Refund a payment, in part or in full (Idempotency-Key required)")
    @doc(body=RefundCreate, headers=("Idempotency-Key",), required=("Idempotency-Key",), answers={201: PaymentPublic},
         errors=("409 conflict",))
    @requires("billing:manage", csrf_tokens=csrf)
    @idempotent(lambda: state.services.idempotency)
    async def refund(request: Request):
        """Never above what was paid less what was refunded (422 with ``refundable_minor``)."""
        body = decode_body(request, RefundCreate)
        payment = await state.services.payments.refund(
            payment_id=path_int(request, "id"), amount=body.amount_minor, reason=body.reason,
            actor_id=int(principal_of(request).subject),
        )
        return json_response(payment, status=201)
