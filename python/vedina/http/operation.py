"""What a route's OpenAPI operation says that its route and guard cannot: one small annotation
next to the route (:func:`doc`), read by :mod:`vedina.http.openapi`.

Derived, never restated: the path, its parameters (from the template), the summary
(``openapi_name``), the description (the docstring), the tags (the SubRouter's), the permission
(from :func:`vedina.http.auth.requires`) and the errors that follow from them (a guard: 401/403;
a JSON body: 400/413/415/422; path or query parameters: 404/422; a known header: its own).
Stated here: the JSON body's Struct, the answers per status, query parameters, the headers
read, and the error codes the service adds.

>>> @router.post("/", openapi_name="Subscribe to a plan")
... @doc(body=SubscriptionCreate, answers={201: SubscriptionPublic, 202: SubscriptionPublic},
...      headers=("Idempotency-Key",), required=("Idempotency-Key",),
...      errors=("402 payment_declined", "409 subscription_exists"))
... @requires("account:self")
... async def subscribe(request): ...

Answers map a status to a msgspec type (a JSON body; a list of types: one of them), to a content
type or a tuple of them
(a body that is not JSON: ``"application/xml"``), or to None (no body). Errors are
``"<status> <code>"`` strings or :class:`vedina.errors.AppError` classes. A route with no
``requires`` guard says who may call it: ``public=True``, or ``access=`` (checked in the
handler: signed URLs, webhook signatures, an address allow-list) with its ``security`` schemes.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

OPERATION_MARK = "vedina_operation"
REQUIRES_MARK = "vedina_requires"  # set by vedina.http.auth.requires: the permissions, any one enough

Cursor = Annotated[str, msgspec.Meta(max_length=512, description="the next_cursor of the previous page")]


def limit(maximum: int, default: int = 20) -> Any:
    return Annotated[int, msgspec.Meta(ge=1, le=maximum, description=f"page size (default {default})")]


@dataclass(frozen=True)
class Header:
    schema: dict[str, Any]
    description: str
    errors: tuple[str, ...] = ()


_TEXT = {"type": "string"}
# Request headers routes read, and the errors a bad one brings.
HEADERS: dict[str, Header] = {
    "X-Profile-Id": Header({"type": "integer", "minimum": 1}, "The viewer profile to act as (default: the main one)",
                           ("404 not_found", "422 validation_failed")),
    "If-Match": Header(_TEXT, 'The ETag (or "<version>") the change was made from; stale: 412',
                       ("412 precondition_failed", "422 validation_failed")),
    "If-None-Match": Header(_TEXT, "An ETag this client holds: 304 when it is still current"),
    "Idempotency-Key": Header({"type": "string", "minLength": 1, "maxLength": 255},
                              "1-255 printable ASCII characters (a UUID); a retry replays the first answer",
                              ("400 bad_request", "409 idempotency_key_in_use", "422 idempotency_key_reused")),
    "Range": Header(_TEXT, "bytes=<first>-<last>[, ...] (RFC 9110 §14.2)", ("416 range_not_satisfiable",)),
    "If-Range": Header(_TEXT, "An ETag or date: the range only if the file is unchanged"),
    "If-Modified-Since": Header(_TEXT, "An HTTP date: 304 when the file is not newer"),
    "Tus-Resumable": Header({"type": "string", "const": "1.0.0"}, "tus protocol version", ("412 precondition_failed",)),
    "Upload-Length": Header({"type": "integer", "minimum": 1}, "The upload's total size in bytes",
                            ("400 bad_request", "413 payload_too_large", "422 validation_failed")),
    "Upload-Metadata": Header(_TEXT, "Comma-separated `key base64(value)` pairs (tus creation)",
                              ("400 bad_request", "422 validation_failed")),
    "Upload-Offset": Header({"type": "integer", "minimum": 0}, "Where this chunk starts",
                            ("400 bad_request", "409 conflict")),
    "Upload-Checksum": Header(_TEXT, "`<sha1|sha256|md5> base64(digest)` of this chunk",
                              ("400 bad_request", "460 checksum_mismatch")),
    "Vedina-Signature": Header(_TEXT, "t=<unix time>,v1=<hex HMAC-SHA256 of `t.body`> (or Stripe-Signature)",
                               ("400 bad_request", "401 unauthorized")),
}


@dataclass(frozen=True)
class Operation:
    answers: Mapping[int, Any]
    body: Any = None  # a msgspec type (JSON) or a content type
    body_optional: bool = False
    query: Mapping[str, Any] = field(default_factory=dict)
    path: Mapping[str, Any] = field(default_factory=dict)  # default: id and *_id integers, others strings
    headers: tuple[str, ...] = ()
    required: tuple[str, ...] = ()  # query parameters and headers that must be sent
    errors: tuple[Any, ...] = ()
    public: bool = False
    access: str | None = None
    security: tuple[str, ...] = ()


def doc(**fields: Any):
    """Annotate a route (put it right under ``@router.<method>``): see the module docstring."""
    operation = Operation(**fields)
    unknown = set(operation.headers) - set(HEADERS)
    if unknown:
        raise ValueError(f"undocumented headers {sorted(unknown)}: add them to vedina.http.operation.HEADERS")

    def mark(handler):
        setattr(handler, OPERATION_MARK, operation)
        return handler

    return mark


def operation_of(handler: Any) -> Operation | None:
    return getattr(inspect.unwrap(handler), OPERATION_MARK, None)


def requirement_of(handler: Any) -> tuple[str, ...] | None:
    """The permissions a ``requires`` guard asks for (``()``: any principal), None when unguarded."""
    return getattr(inspect.unwrap(handler), REQUIRES_MARK, None)
