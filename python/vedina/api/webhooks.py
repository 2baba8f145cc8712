"""/api/webhooks/{provider}: signed event deliveries from external providers."""

from __future__ import annotations

from robyn import Request, SubRouter

from vedina.errors import UnsupportedMediaType
from vedina.http.operation import doc
from vedina.http.responses import json_response
from vedina.services.webhooks import SIGNATURE_HEADER, WebhookEvent, WebhookReceipt
from vedina.state import AppState


def register(router: SubRouter, state: AppState) -> None:
    @router.post("/:provider", openapi_name="Receive a signed webhook (Vedina-Signature or Stripe-Signature: t=...,v1=...)")
    @doc(access="a payment provider, signing with its secret (WEBHOOK_SECRETS)", security=("webhookSignature",),
         path={"provider": str}, body=WebhookEvent, headers=("Vedina-Signature",),
         answers={200: WebhookReceipt, 202: WebhookReceipt})
    async def receive(request: Request):
        content_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            raise UnsupportedMediaType("Send the event as application/json", details={"field": "content-type"})
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        receipt = await state.services.webhooks.receive(
            provider=request.path_params.get("provider", ""),
            # Stripe (and vedina provider-sim) sign in Stripe-Signature; the scheme is the same.
            signature=request.headers.get(SIGNATURE_HEADER) or request.headers.get("stripe-signature"),
            body=body,
        )
        return json_response(receipt, status=202 if receipt.status == "accepted" else 200)
