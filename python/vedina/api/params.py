"""Reading path and query parameters strictly: a bad value is a 422 naming the parameter."""

from __future__ import annotations

import re

from robyn import Request

from vedina.errors import ValidationFailed

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
