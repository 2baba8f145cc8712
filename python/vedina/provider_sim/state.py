"""The simulator's objects and Stripe's rules for them, in memory.

Objects are kept as the JSON Stripe answers with (customers, payment methods,
payment intents, charges, refunds), so the API layer returns them as they are.
Errors are :class:`ApiError` with Stripe's status, ``type`` and ``code``.

Test payment methods (Stripe's magic ids): ``pm_card_visa`` and ``pm_card_mastercard``
succeed; ``pm_card_chargeDeclined`` declines (``card_declined``);
``pm_card_chargeDeclinedInsufficientFunds`` declines with ``decline_code``
``insufficient_funds``; ``pm_card_chargeCustomerFail`` attaches, then declines. Attaching
a magic id makes a new ``pm_...`` of that card, as Stripe does.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from vedina.provider_sim.behaviours import Behaviour
from vedina.provider_sim.events import EventSender
from vedina.provider_sim.ids import new_id

# magic id -> (brand, last4, decline code or None)
TEST_CARDS: dict[str, tuple[str, str, str | None]] = {
    "pm_card_visa": ("visa", "4242", None),
    "pm_card_mastercard": ("mastercard", "4444", None),
    "pm_card_chargeDeclined": ("visa", "0002", "card_declined"),
    "pm_card_visa_chargeDeclined": ("visa", "0002", "card_declined"),
    "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995", "insufficient_funds"),
    "pm_card_visa_chargeDeclinedInsufficientFunds": ("visa", "9995", "insufficient_funds"),
    "pm_card_chargeCustomerFail": ("visa", "0341", "card_declined"),
}
# Stripe reports these as code "card_declined" with the reason in decline_code.
_DECLINE_REASONS = {"card_declined": "generic_decline", "insufficient_funds": "insufficient_funds",
                    "lost_card": "lost_card", "stolen_card": "stolen_card"}
_MESSAGES = {
    "generic_decline": "Your card was declined.", "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": "Your card was declined.", "stolen_card": "Your card was declined.",
    "expired_card": "Your card has expired.", "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}
_PREFIXES = {"cus": "customers", "pm": "payment_methods", "pi": "intents", "ch": "charges", "re": "refunds"}


class ApiError(Exception):
    """An answer in Stripe's error shape: ``{"error": {"type", "code", "message", "param", ...}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"type": type, "code": code, "message": message, "param": param, **extra}
        self.error = {k: v for k, v in self.error.items() if v is not None}


def missing(kind: str, object_id: str, *, status: int = 404, param: str | None = None) -> ApiError:
    return ApiError(status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def check_params(params: dict[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed and name != "expand":
            raise ApiError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


def _integer(params: dict[str, Any], name: str, *, required: bool = True, minimum: int = 1) -> int | None:
    raw = params.get(name)
    if raw is None:
        if required:
            raise ApiError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
        return None
    if not isinstance(raw, str) or not raw.isdigit() or int(raw) < minimum:
        raise ApiError(400, f"Invalid integer: {raw}", code="parameter_invalid_integer", param=name)
    return int(raw)


def _boolean(params: dict[str, Any], name: str) -> bool:
    raw = params.get(name, "false")
    if raw not in ("true", "false"):
        raise ApiError(400, f"Invalid boolean: {raw}", code="parameter_invalid_string_blank", param=name)
    return raw == "true"


def _metadata(params: dict[str, Any], current: dict[str, str] | None = None) -> dict[str, str]:
    raw = params.get("metadata", {})
    if raw == "":  # metadata= clears it, as in Stripe
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, "Invalid object", code="parameter_invalid_object", param="metadata")
    merged = dict(current or {})
    for key, value in raw.items():
        if not isinstance(value, str) or len(key) > 40 or len(value) > 500:
            raise ApiError(400, f"Invalid metadata value for {key}", param=f"metadata[{key}]")
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > 50:
        raise ApiError(400, "Metadata can have at most 50 keys", param="metadata")
    return merged


def _string(params: dict[str, Any], name: str) -> str | None:
    raw = params.get(name)
    if raw is not None and not isinstance(raw, str):
        raise ApiError(400, f"Invalid string: {name}", code="parameter_invalid_string", param=name)
    return raw or None


class SimState:
    def __init__(self, *, events: EventSender, behaviour: Callable[[], Behaviour],
                 later: Callable[[float, Callable[[], None]], None]) -> None:
        self._events = events
        self._behaviour = behaviour
        self._later = later  # run a callback after some seconds (the event loop's call_later)
        self.customers: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.card_of: dict[str, str] = {}  # payment method id -> the magic test card it was made from
        self.created_intents: list[str] = []  # since the last /_sim/reset: what tests count

    def forget(self, *, objects: bool) -> None:
        self.created_intents.clear()
        if objects:
            for table in (self.customers, self.payment_methods, self.intents, self.charges, self.refunds, self.card_of):
                table.clear()

    def lookup(self, object_id: str) -> dict[str, Any] | None:
        table = _PREFIXES.get(object_id.partition("_")[0])
        return getattr(self, table).get(object_id) if table else None

    def expand(self, obj: dict[str, Any], paths: Any) -> dict[str, Any]:
        if not paths:
            return obj
        if isinstance(paths, str) or not all(isinstance(p, str) for p in paths):
            raise ApiError(400, "Invalid array", code="parameter_invalid_array", param="expand")
        obj = copy.deepcopy(obj)
        for path in paths:
            value = obj.get(path)
            found = self.lookup(value) if isinstance(value, str) else None
            if path not in obj or (value is not None and found is None):
                raise ApiError(400, f"This property cannot be expanded ({path}).", param="expand")
            if found is not None:
                obj[path] = copy.deepcopy(found)
        return obj

    # -- customers and payment methods ---------------------------------------------

    def create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        check_params(params, {"email", "name", "description", "metadata"})
        customer = {
            "id": new_id("cus"), "object": "customer", "created": int(time.time()), "livemode": False,
            "email": _string(params, "email"), "name": _string(params, "name"),
            "description": _string(params, "description"), "metadata": _metadata(params),
            "invoice_settings": {"default_payment_method": None, "custom_fields": None, "footer": None},
        }
        self.customers[customer["id"]] = customer
        return customer

    def update_customer(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise missing("customer", customer_id)
        check_params(params, {"email", "name", "description", "metadata", "invoice_settings"})
        settings = params.get("invoice_settings", {})
        if not isinstance(settings, dict) or set(settings) - {"default_payment_method"}:
            raise ApiError(400, "Invalid invoice_settings", code="parameter_unknown", param="invoice_settings")
        if "default_payment_method" in settings:
            pm_id = settings["default_payment_method"] or None
            pm = self.payment_methods.get(pm_id) if pm_id else None
            if pm_id and pm is None:
                raise missing("PaymentMethod", pm_id, status=400, param="invoice_settings[default_payment_method]")
            if pm is not None and pm["customer"] != customer_id:
                raise ApiError(400, f"The customer does not have a payment method with the ID {pm_id}. The payment "
                               "method must be attached to the customer.",
                               param="invoice_settings[default_payment_method]", code="resource_missing")
            customer["invoice_settings"]["default_payment_method"] = pm_id
        for name in ("email", "name", "description"):
            if name in params:
                customer[name] = _string(params, name)
        customer["metadata"] = _metadata(params, customer["metadata"])
        return customer

    def attach(self, pm_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_params(params, {"customer"})
        customer_id = _string(params, "customer")
        if not customer_id:
            raise ApiError(400, "Missing required param: customer.", code="parameter_missing", param="customer")
        if customer_id not in self.customers:
            raise missing("customer", customer_id, status=400, param="customer")
        if pm_id in TEST_CARDS:
            pm = self._new_payment_method(pm_id)
        elif pm_id in self.payment_methods:
            pm = self.payment_methods[pm_id]
            if pm["customer"] not in (None, customer_id):
                raise ApiError(400, "The payment method you provided has already been attached to a customer.")
        else:
            raise missing("PaymentMethod", pm_id)
        pm["customer"] = customer_id
        return pm

    def _new_payment_method(self, magic: str) -> dict[str, Any]:
        brand, last4, _ = TEST_CARDS[magic]
        pm = {
            "id": new_id("pm"), "object": "payment_method", "type": "card", "created": int(time.time()),
            "livemode": False, "customer": None, "metadata": {}, "billing_details": {"email": None, "name": None},
            "card": {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": time.gmtime().tm_year + 3,
                     "country": "US", "funding": "credit"},
        }
        self.payment_methods[pm["id"]] = pm
        self.card_of[pm["id"]] = magic
        return pm

    # -- payment intents and charges -----------------------------------------------

    def intent(self, intent_id: str) -> dict[str, Any]:
        if intent_id not in self.intents:
            raise missing("payment_intent", intent_id)
        return self.intents[intent_id]

    def create_intent(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        check_params(params, {"amount", "currency", "customer", "payment_method", "confirm", "off_session",
                              "metadata", "description", "payment_method_types", "receipt_email"})
        amount = _integer(params, "amount")
        currency = (_string(params, "currency") or "").lower()
        if len(currency) != 3 or not currency.isalpha():
            raise ApiError(400, f"Invalid currency: {params.get('currency')}", code="parameter_invalid_string",
                           param="currency")
        customer_id = _string(params, "customer")
        if customer_id and customer_id not in self.customers:
            raise missing("customer", customer_id, status=400, param="customer")
        confirm, off_session = _boolean(params, "confirm"), _boolean(params, "off_session")
        if off_session and not confirm:
            raise ApiError(400, "off_session can only be set when confirm=true", param="off_session")
        if params.get("payment_method_types", ["card"]) != ["card"]:
            raise ApiError(400, "The simulator supports payment_method_types [card] only",
                           code="payment_method_type_invalid", param="payment_method_types")
        pm_id = _string(params, "payment_method")
        card = self._card_for(pm_id, customer_id) if pm_id else None
        if confirm and card is None:
            raise ApiError(400, "You cannot confirm this PaymentIntent because it's missing a payment method.",
                           code="payment_intent_unexpected_state")
        intent = {
            "id": new_id("pi"), "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_received": 0, "currency": currency, "customer": customer_id, "payment_method": pm_id,
            "payment_method_types": ["card"], "capture_method": "automatic", "confirmation_method": "automatic",
            "created": int(time.time()), "description": _string(params, "description"), "livemode": False,
            "metadata": _metadata(params), "last_payment_error": None, "latest_charge": None, "next_action": None,
            "canceled_at": None, "cancellation_reason": None, "receipt_email": _string(params, "receipt_email"),
            "status": "requires_confirmation" if pm_id else "requires_payment_method",
        }
        intent["client_secret"] = f"{intent['id']}_secret_{new_id('s')[2:]}"
        self.intents[intent["id"]] = intent
        self.created_intents.append(intent["id"])
        if not confirm:
            return intent
        behaviour = self._behaviour()
        decline = behaviour.decline_code if behaviour.take("decline_next") else TEST_CARDS[card][2]
        if decline:
            self._fail(intent, decline, request=request)
            raise self._card_error(intent)
        if behaviour.processing:
            intent["status"] = "processing"
            self._events.emit("payment_intent.processing", intent, request=request)
            if behaviour.settle_after_seconds is not None:
                outcome = behaviour.settle_outcome
                self._later(behaviour.settle_after_seconds, lambda: self._settle_if_processing(intent["id"], outcome))
            return intent
        self._succeed(intent, request=request)
        return intent

    def _card_for(self, pm_id: str, customer_id: str | None) -> str:
        if pm_id in TEST_CARDS:
            return pm_id
        pm = self.payment_methods.get(pm_id)
        if pm is None:
            raise missing("PaymentMethod", pm_id, status=400, param="payment_method")
        if pm["customer"] is not None and pm["customer"] != customer_id:
            raise ApiError(400, f"The provided PaymentMethod {pm_id} belongs to a different Customer, or none was "
                           "given; pass the customer it is attached to.", param="payment_method")
        return self.card_of[pm_id]

    def settle(self, intent_id: str, outcome: str, *, code: str = "card_declined") -> dict[str, Any]:
        intent = self.intent(intent_id)
        if intent["status"] != "processing":
            raise ApiError(400, f"PaymentIntent {intent_id} is {intent['status']}, not processing",
                           code="payment_intent_unexpected_state")
        if outcome == "succeeded":
            self._succeed(intent, request=None)
        else:
            self._fail(intent, code, request=None)
        return intent

    def _settle_if_processing(self, intent_id: str, outcome: str) -> None:
        intent = self.intents.get(intent_id)
        if intent is not None and intent["status"] == "processing":
            self.settle(intent_id, outcome)

    def _new_charge(self, intent: dict[str, Any], *, paid: bool) -> dict[str, Any]:
        pm_id = intent["payment_method"]
        charge = {
            "id": new_id("ch"), "object": "charge", "amount": intent["amount"],
            "amount_captured": intent["amount"] if paid else 0, "amount_refunded": 0, "captured": paid,
            "currency": intent["currency"], "customer": intent["customer"], "created": int(time.time()),
            "livemode": False, "metadata": dict(intent["metadata"]), "paid": paid, "payment_intent": intent["id"],
            "payment_method": pm_id, "refunded": False, "status": "succeeded" if paid else "failed",
            "failure_code": None, "failure_message": None,
        }
        self.charges[charge["id"]] = charge
        intent["latest_charge"] = charge["id"]
        return charge

    def _succeed(self, intent: dict[str, Any], *, request: dict[str, Any] | None) -> None:
        self._new_charge(intent, paid=True)
        intent.update(status="succeeded", amount_received=intent["amount"], last_payment_error=None)
        self._events.emit("payment_intent.succeeded", intent, request=request)

    def _fail(self, intent: dict[str, Any], decline: str, *, request: dict[str, Any] | None) -> None:
        charge = self._new_charge(intent, paid=False)
        reason = _DECLINE_REASONS.get(decline, decline)
        code = "card_declined" if decline in _DECLINE_REASONS else decline
        pm_id = intent["payment_method"]
        pm = self.payment_methods.get(pm_id) or {"id": pm_id, "object": "payment_method", "type": "card"}
        charge.update(failure_code=code, failure_message=_MESSAGES[reason])
        # As Stripe does: the failed payment method moves from the intent to last_payment_error.
        intent.update(status="requires_payment_method", payment_method=None, last_payment_error={
            "type": "card_error", "code": code, "decline_code": reason, "message": _MESSAGES[reason],
            "charge": charge["id"], "payment_method": copy.deepcopy(pm),
        })
        self._events.emit("payment_intent.payment_failed", intent, request=request)

    def _card_error(self, intent: dict[str, Any]) -> ApiError:
        error = intent["last_payment_error"]
        return ApiError(402, error["message"], type="card_error", code=error["code"],
                        decline_code=error["decline_code"], charge=error["charge"],
                        payment_method=error["payment_method"], payment_intent=copy.deepcopy(intent))

    # -- refunds ---------------------------------------------------------------------

    def refund(self, refund_id: str) -> dict[str, Any]:
        if refund_id not in self.refunds:
            raise missing("refund", refund_id)
        return self.refunds[refund_id]

    def create_refund(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        check_params(params, {"payment_intent", "charge", "amount", "metadata", "reason"})
        intent_id = _string(params, "payment_intent")
        charge_id = _string(params, "charge")
        if charge_id and not intent_id:
            if charge_id not in self.charges:
                raise missing("charge", charge_id, status=400, param="charge")
            intent_id = self.charges[charge_id]["payment_intent"]
        if not intent_id:
            raise ApiError(400, "One of the following params should be provided for this request: payment_intent "
                           "or charge.", code="parameter_missing", param="payment_intent")
        intent = self.intents.get(intent_id)
        if intent is None:
            raise missing("payment_intent", intent_id, status=400, param="payment_intent")
        if intent["status"] != "succeeded":
            raise ApiError(400, f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                           code="charge_not_refundable", param="payment_intent")
        charge = self.charges[intent["latest_charge"]]
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        if remaining == 0:
            raise ApiError(400, f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
        amount = _integer(params, "amount", required=False) or remaining
        if amount > remaining:
            raise ApiError(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                           code="amount_too_large", param="amount")
        reason = _string(params, "reason")
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise ApiError(400, f"Invalid reason: {reason}", code="parameter_invalid_string", param="reason")
        refund = {
            "id": new_id("re"), "object": "refund", "amount": amount, "currency": intent["currency"],
            "charge": charge["id"], "payment_intent": intent_id, "created": int(time.time()),
            "metadata": _metadata(params), "reason": reason, "status": "succeeded",
        }
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        self._events.emit("refund.created", refund, request=request)
        self._events.emit("charge.refunded", charge, request=request)
        return refund
