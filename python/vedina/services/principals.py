"""Who is calling: turning an access token or a signed request into a Principal.

A principal is a user (access token from a bearer header or a cookie) or an
API key (SigV4). For users every request re-checks, in the shared store, that
the token was not logged out, its session is live, and the account is active
and still has the role it had: a suspension or a role change applies on the
next request, on every worker.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import msgspec

from vedina._native import JWTError
from vedina.errors import Forbidden, Unauthorized
from vedina.security.jwt_keys import TokenKeys
from vedina.security.rbac import permissions_of
from vedina.services.api_keys import ApiKeyService
from vedina.services.auth_state import AuthState

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

    def claims(self) -> dict[str, str]:
        """Flat string claims for ``robyn.Identity`` (what rate limiters and handlers read)."""
        return {
            "sub": self.subject, "role": self.role, "kind": self.kind, "via": self.via, "sid": self.session_id,
            "jti": self.token_id, "exp": str(self.expires_at), "permissions": " ".join(sorted(self.permissions)),
        }

    @classmethod
    def from_claims(cls, claims: dict[str, str]) -> Principal:
        return cls(
            kind=claims["kind"], subject=claims["sub"], role=claims["role"], via=claims["via"],
            permissions=frozenset(claims["permissions"].split()), session_id=claims.get("sid", ""),
            token_id=claims.get("jti", ""), expires_at=int(claims.get("exp") or 0),
        )


class Authenticator:
    def __init__(self, *, token_keys: TokenKeys, auth_state: AuthState, api_keys: ApiKeyService) -> None:
        self._keys = token_keys
        self._state = auth_state
        self._api_keys = api_keys

    async def access_token(self, token: str, *, via: Literal["bearer", "cookie"]) -> Principal:
        try:
            claims = self._keys.verifier.verify(token)
        except JWTError:
            raise Unauthorized("Invalid or expired access token", headers=INVALID_TOKEN) from None
        if claims.get("typ") != "access" or not str(claims.get("sub", "")).isdigit():
            raise Unauthorized("Invalid or expired access token", headers=INVALID_TOKEN)
        user_id, jti, sid = int(claims["sub"]), str(claims.get("jti", "")), str(claims.get("sid", ""))
        denied, session_live, state = await asyncio.gather(
            self._state.token_denied(jti), self._state.session_active(sid), self._state.user_state(user_id)
        )
        if denied or not session_live or state is None or state.status == "deleted":
            raise Unauthorized("Access token revoked", headers=INVALID_TOKEN)
        if state.status != "active":
            raise Forbidden("This account is suspended")
        return Principal(
            kind="user", subject=str(user_id), role=state.role, permissions=permissions_of(state.role), via=via,
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
