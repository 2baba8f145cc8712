"""CSRF tokens for cookie sessions: bound to the session, checked in constant time.

The token is HMAC-SHA256(csrf key, session id). The server sends it in a
readable (not HttpOnly) cookie and in the login answer; a browser client
echoes it in the ``X-CSRF-Token`` header on every unsafe request. A cross-site
page can make the browser send the cookies but cannot read them, so it cannot
produce the header. Binding the token to the session (instead of comparing
cookie and header only) also defeats an attacker who can plant a cookie of
their own on a sibling subdomain. No server-side state is needed.

>>> csrf = CsrfTokens(b"k" * 32)
>>> csrf.matches("fam1", csrf.token_for("fam1"))
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac

HEADER = "x-csrf-token"
COOKIE = "vedina_csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CsrfTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def token_for(self, session_id: str) -> str:
        mac = hmac.new(self._key, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def matches(self, session_id: str, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(self.token_for(session_id).encode(), presented.encode("utf-8", "replace"))
