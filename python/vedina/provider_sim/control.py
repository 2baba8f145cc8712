"""The ``/_sim/`` control endpoints (JSON in and out, no API key; loopback only).

See the package docstring for the list; errors are ``{"error": {"message": ...}}``
with 400 (bad body, naming the field) or 404.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from vedina.provider_sim.behaviours import DECLINE_CODES
from vedina.provider_sim.http import Request, Response
from vedina.provider_sim.state import ApiError

if TYPE_CHECKING:
    from vedina.provider_sim.app import Simulator

SIMULATOR_NAME = "vedina-provider-sim"
_SETTLE = re.compile(r"^/_sim/intents/([A-Za-z0-9_]+)/settle$")


class WebhookBody(msgspec.Struct, forbid_unknown_fields=True):
    url: str | None
    secret: str | None = None


class ResetBody(msgspec.Struct, forbid_unknown_fields=True):
    objects: bool = False


class DeliverBody(msgspec.Struct, forbid_unknown_fields=True):
    order: Literal["created", "reverse"] = "created"


class SettleBody(msgspec.Struct, forbid_unknown_fields=True):
    outcome: Literal["succeeded", "failed"]
    code: str = "card_declined"


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _body(request: Request, kind: type) -> Any:
    try:
        return msgspec.json.decode(request.body or b"{}", type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ControlError(400, f"Invalid body: {exc}") from None


def handle_control(sim: Simulator, request: Request) -> Response:
    try:
        return Response.json(200, _route(sim, request))
    except ControlError as exc:
        return Response.json(exc.status, {"error": {"message": str(exc)}})
    except ApiError as exc:
        return Response.json(exc.status, {"error": exc.error})


def _route(sim: Simulator, request: Request) -> Any:
    method, path = request.method, request.path
    if (method, path) == ("GET", "/_sim/health"):
        return {"ok": True, "simulator": SIMULATOR_NAME}
    if (method, path) == ("GET", "/_sim/behaviour"):
        return msgspec.to_builtins(sim.behaviour)
    if (method, path) == ("POST", "/_sim/behaviour"):
        try:
            sim.behaviour = sim.behaviour.updated(msgspec.json.decode(request.body or b"{}"))
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError, TypeError) as exc:
            raise ControlError(400, f"Invalid behaviour: {exc}") from None
        return msgspec.to_builtins(sim.behaviour)
    if (method, path) == ("GET", "/_sim/webhook"):
        return {"url": sim.events.target.url, "secret_set": bool(sim.events.target.secret)}
    if (method, path) == ("POST", "/_sim/webhook"):
        body = _body(request, WebhookBody)
        if body.url is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", body.url):
            raise ControlError(400, "Invalid body: url must be an http(s) URL or null")
        sim.events.target.url = body.url
        if body.secret is not None:
            if len(body.secret) < 16:
                raise ControlError(400, "Invalid body: secret must have at least 16 characters")
            sim.events.target.secret = body.secret
        return {"url": sim.events.target.url, "secret_set": True}
    if (method, path) == ("POST", "/_sim/reset"):
        sim.reset(objects=_body(request, ResetBody).objects)
        return {"reset": True}
    if (method, path) == ("GET", "/_sim/requests"):
        return {"data": sim.requests}
    if (method, path) == ("GET", "/_sim/charges"):
        return {"data": [sim.state.intents[i] for i in sim.state.created_intents if i in sim.state.intents]}
    if (method, path) == ("GET", "/_sim/events"):
        return {"data": sim.events.events, "held": [e["id"] for e in sim.events.held],
                "deliveries": msgspec.to_builtins(sim.events.deliveries)}
    if (method, path) == ("POST", "/_sim/deliver"):
        return {"released": sim.events.release(_body(request, DeliverBody).order)}
    settle = _SETTLE.match(path)
    if settle and method == "POST":
        body = _body(request, SettleBody)
        if body.code not in DECLINE_CODES:
            raise ControlError(400, f"Invalid body: code must be one of {', '.join(DECLINE_CODES)}")
        return sim.state.settle(settle.group(1), body.outcome, code=body.code)
    raise ControlError(404, f"No control endpoint {method} {path}")
