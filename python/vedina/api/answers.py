"""The shapes of answers that api modules build as plain dicts (or repositories return as rows).

They exist so the OpenAPI document can describe every JSON answer with a msgspec Struct
(see :mod:`vedina.http.operation`); handlers keep building their dicts, and
tests/ops/test_openapi.py validates real answers against these shapes, so a drift fails.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok"]
    version: str
    api_version: str


class Readiness(msgspec.Struct, kw_only=True):
    status: Literal["ready"]
    checks: dict[str, str]  # database, cache, broker -> "ok"
    profile: Literal["embedded", "real"]


class Accepted(msgspec.Struct, kw_only=True):
    status: Literal["accepted"]


class RevokedSessions(msgspec.Struct, kw_only=True):
    revoked_sessions: int


class WhoAmI(msgspec.Struct, kw_only=True):
    kind: Literal["user", "api_key"]
    sub: str
    role: str  # a role for users, "service" for API keys
    via: str  # bearer, cookie or sigv4
    permissions: list[str]
    session_id: str | None


class MovieVersion(msgspec.Struct, kw_only=True):
    """A movie's id and the version an edit made (also its ETag, ``"<version>"``)."""

    id: int
    version: int


class Genre(msgspec.Struct, kw_only=True):
    id: int
    slug: str
    name: str


class GenreList(msgspec.Struct, kw_only=True):
    items: list[Genre]


class GenreName(msgspec.Struct, kw_only=True):
    slug: str
    name: str


class PersonName(msgspec.Struct, kw_only=True):
    id: int
    name: str


class PersonList(msgspec.Struct, kw_only=True):
    items: list[PersonName]


class PersonCredit(msgspec.Struct, kw_only=True):
    movie_id: int
    title: str
    department: Literal["cast", "crew"]
    role: str


class PersonDetail(msgspec.Struct, kw_only=True):
    id: int
    name: str
    credits: list[PersonCredit]
