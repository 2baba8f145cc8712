"""The Stripe REST endpoints the adapter calls, routed onto :class:`SimState`.

==========================================  =====================================
POST /v1/customers                          create a customer
POST /v1/customers/{id}                     update (``invoice_settings[default_payment_method]``)
POST /v1/payment_methods/{pm}/attach        attach to ``customer`` (a magic id makes a new pm)
POST /v1/payment_intents                    create (and with ``confirm=true``, charge)
GET  /v1/payment_intents/{id}               retrieve
POST /v1/refunds                            refund ``payment_intent`` (``amount``: default the rest)
GET  /v1/refunds/{id}                       retrieve
==========================================  =====================================

Every endpoint takes ``expand[]``; unknown parameters are refused as Stripe does.
"""

from __future__ import annotations

import re
from typing import Any

from vedina.provider_sim.state import ApiError, SimState

_ID = r"([A-Za-z0-9_]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/v1/customers$"), "create_customer"),
    ("POST", re.compile(rf"^/v1/customers/{_ID}$"), "update_customer"),
    ("POST", re.compile(rf"^/v1/payment_methods/{_ID}/attach$"), "attach"),
    ("POST", re.compile(r"^/v1/payment_intents$"), "create_intent"),
    ("GET", re.compile(rf"^/v1/payment_intents/{_ID}$"), "retrieve_intent"),
    ("POST", re.compile(r"^/v1/refunds$"), "create_refund"),
    ("GET", re.compile(rf"^/v1/refunds/{_ID}$"), "retrieve_refund"),
]


def call(state: SimState, method: str, path: str, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer of one API request; raises :class:`ApiError`."""
    for route_method, pattern, name in _ROUTES:
        match = pattern.match(path)
        if match and route_method == method:
            return state.expand(_dispatch(state, name, match.groups(), params, request), params.get("expand"))
    raise ApiError(404, f"Unrecognized request URL ({method}: {path}). The provider simulator implements only "
                   "the endpoints Vedina's adapter calls.")


def _dispatch(state: SimState, name: str, ids: tuple[str, ...], params: dict[str, Any],
              request: dict[str, Any]) -> dict[str, Any]:
    if name == "create_customer":
        return state.create_customer(params)
    if name == "update_customer":
        return state.update_customer(ids[0], params)
    if name == "attach":
        return state.attach(ids[0], params)
    if name == "create_intent":
        return state.create_intent(params, request=request)
    if name == "retrieve_intent":
        _no_params(params)
        return state.intent(ids[0])
    if name == "create_refund":
        return state.create_refund(params, request=request)
    _no_params(params)
    return state.refund(ids[0])


def _no_params(params: dict[str, Any]) -> None:
    for name in params:
        if name != "expand":
            raise ApiError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
