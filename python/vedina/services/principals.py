"""Who is calling: turning an access token or a signed request into a Principal.

A principal is a user (access token from a bearer header or a cookie) or an
API key (SigV4). For users every request checks that the token was not logged
out, its session is live, and the account is active and still has the role it
had. The answer is kept in a per-worker :class:`NearCache` keyed by the token
and stamped with the three keys it depends on (``auth:deny:<jti>``,
``auth:session:<family>``, ``auth:user:<id>``): every change to those is
published on the invalidation channel, so a repeated token costs no I/O, and
a logout, suspension or role change still applies on every worker and host
within the propagation bound. A miss reads the shared store in one round trip.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from vedina._native import JWTError
from vedina.errors import Forbidden, Unauthorized
from vedina.security.jwt_keys import TokenKeys
from vedina.security.rbac import permissions_of
from vedina.services.api_keys import ApiKeyService
from vedina.services.auth_state import AuthState, deny_key, session_key, user_key
from vedina.services.sessions import ACCESS_TOKEN_TTL
from vedina.storage.near_cache import NearCache

# The longest access-token lifetime this server issues, plus clock skew.
MAX_ACCESS_TOKEN_SECONDS = ACCESS_TOKEN_TTL + 60
# RFC 6750 §3: how a resource server says the bearer token itself is bad.
INVALID_TOKEN = {"www-authenticate": 'Bearer realm="vedina", error="invalid_token"'}


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["user", "api_key"]
    subject: str  # user id, or the access key id
    role: str  # a Role for users, "service" for API keys
    permissions: frozenset[str]
    via: Literal["bearer", "cookie", "sigv4"]
    session_id: str = ""
    token_id: str = ""
    expires_at: int = 0


# Why a token that verifies is still refused (cached like a principal).
_REVOKED, _SUSPENDED = "revoked", "suspended"


class Authenticator:
    def __init__(
        self, *, token_keys: TokenKeys, auth_state: AuthState, api_keys: ApiKeyService, principals: NearCache
    ) -> None:
        self._keys = token_keys
        self._state = auth_state
        self._api_keys = api_keys
        self._principals = principals

    async def access_token(self, token: str, *, via: Literal["bearer", "cookie"]) -> Principal:
        try:
            claims = self._keys.verifier.verify(token)
        except JWTError:
            raise Unauthorized("Invalid or expired access token", headers=INVALID_TOKEN) from None
        sub, exp = claims.get("sub"), claims.get("exp")
        if (
            claims.get("typ") != "access"
            or not (isinstance(sub, str) and sub.isascii() and sub.isdigit())
            # Our tokens carry an integer exp at most one token lifetime away; a longer one was not issued here.
            or not (type(exp) is int and exp <= time.time() + MAX_ACCESS_TOKEN_SECONDS)
        ):
            raise Unauthorized("Invalid or expired access token", headers=INVALID_TOKEN)
        user_id, jti, sid = int(sub), str(claims.get("jti", "")), str(claims.get("sid", ""))
        key, depends_on = f"{via}:{jti}", (deny_key(jti), session_key(sid), user_key(user_id))
        found = self._principals.peek(key, depends_on)
        if found is None:
            found = await self._principals.get_or_load(key, depends_on, lambda: self._load(claims, via=via))
        if found is _REVOKED:
            raise Unauthorized("Access token revoked", headers=INVALID_TOKEN)
        if found is _SUSPENDED:
            raise Forbidden("This account is suspended")
        return found

    async def _load(self, claims: dict, *, via: Literal["bearer", "cookie"]) -> Principal | str:
        sub, jti, sid = claims["sub"], str(claims.get("jti", "")), str(claims.get("sid", ""))
        user_id = int(sub)
        state = await self._state.token_state(jti=jti, family_id=sid, user_id=user_id)
        user = state.user
        # A session of another user (sid and sub from different tokens) is no session of this one.
        if state.denied or state.session_owner != user_id or user is None or user.status == "deleted":
            return _REVOKED
        if user.status != "active":
            return _SUSPENDED
        return Principal(
            kind="user", subject=sub, role=user.role, permissions=permissions_of(user.role), via=via,
            session_id=sid, token_id=jti, expires_at=int(claims["exp"]),
        )

    async def signed_request(
        self, *, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes, authorization: str
    ) -> Principal:
        caller = await self._api_keys.authenticate(
            method=method, path=path, query=query, headers=headers, body=body, authorization=authorization
        )
        return Principal(
            kind="api_key", subject=caller.access_key_id, role="service", permissions=frozenset(caller.scopes),
            via="sigv4",
        )
