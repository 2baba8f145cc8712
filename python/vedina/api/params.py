"""Reading path and query parameters strictly: a bad value is a 422 naming the parameter."""

from __future__ import annotations

import re

from robyn import Request

from vedina.errors import PreconditionRequired, ValidationFailed

_INTEGER = re.compile(r"-?[0-9]{1,18}")


def _int(raw: str, *, name: str, minimum: int, maximum: int) -> int:
    if not _INTEGER.fullmatch(raw):
        raise ValidationFailed(f"{name} must be an integer", details={"field": name, "value": raw[:64]})
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ValidationFailed(
            f"{name} must be between {minimum} and {maximum}",
            details={"field": name, "minimum": minimum, "maximum": maximum},
        )
    return value


def query_int(request: Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name, None)
    return default if raw is None else _int(raw, name=name, minimum=minimum, maximum=maximum)


def path_int(request: Request, name: str) -> int:
    return _int(request.path_params.get(name, ""), name=name, minimum=1, maximum=2**63 - 1)


_IF_MATCH_VERSION = re.compile(r'\s*(?:W/)?"?(\d{1,9})(?:\.[0-9a-f]*)?"?\s*')


def if_match_version(request: Request, *, required: bool, what: str) -> int | None:
    """The version an edit was made from, from ``If-Match`` (the resource's ETag, ``"<version>"`` or
    ``"<version>.<hash>"``); None for ``*`` or, when not ``required``, absent (428 when required)."""
    value = request.headers.get("if-match")
    if value is None:
        if required:
            raise PreconditionRequired(f"Send If-Match with the ETag of the {what} you edited",
                                       details={"field": "If-Match"})
        return None
    if value.strip() == "*":
        return None
    match = _IF_MATCH_VERSION.fullmatch(value)
    if match is None:
        raise ValidationFailed(f"If-Match must be the {what}'s ETag", details={"field": "If-Match"})
    return int(match.group(1))
