"""Reading JSON request bodies strictly into msgspec Structs.

Every failure is a 4xx in the common error shape whose ``details.field``
names the offending field: malformed JSON (400, field ``body``), a wrong
type, a missing or unknown field, a string too long or not matching its
pattern (422). Structs used here set ``forbid_unknown_fields=True``.

>>> payload = decode_body(request, Register)   # or raises ValidationFailed
"""

from __future__ import annotations

import re
from typing import Annotated, TypeVar

import msgspec
from robyn import Headers, Request, Response

from vedina.errors import BadRequest, UnsupportedMediaType, ValidationFailed

T = TypeVar("T")

# A pragmatic address check (RFC 5321 lengths, one @, a dot in the domain, no
# spaces or brackets); whether it really receives mail is what verification is for.
Email = Annotated[
    str, msgspec.Meta(min_length=6, max_length=254, pattern=r"^[^@\s<>()\[\],;:\"\\]{1,64}@[^@\s<>()\[\],;:\"\\]+\.[^@\s<>()\[\],;:\"\\.]{2,}\Z")
]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
# Any printable text, stored verbatim (HTML included: responses are JSON with nosniff).
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+\Z")]
Token = Annotated[str, msgspec.Meta(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_\-]+\Z")]

_AT = re.compile(r" - at `\$(?:\.([^`\[]+))?")
_NAMED = re.compile(r"field `([^`]+)`")


def _field_of(message: str) -> str:
    named = _NAMED.search(message)
    if named:
        return named.group(1)
    at = _AT.search(message)
    return at.group(1) if at and at.group(1) else "body"


def decode_body(request: Request, cls: type[T], *, optional: bool = False) -> T | None:
    body = request.body
    if isinstance(body, str):
        body = body.encode()
    if not body:
        if optional:
            return None
        raise ValidationFailed("A JSON body is required", details={"field": "body"})
    content_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType("Send the body as application/json", details={"field": "content-type"})
    try:
        return msgspec.json.decode(body, type=cls)
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise ValidationFailed(message, details={"field": _field_of(message)}) from None
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises the latter on bytes that are not UTF-8
        raise BadRequest("Malformed JSON body", details={"field": "body"}) from None


def no_content() -> Response:
    return Response(204, Headers({}), b"")
