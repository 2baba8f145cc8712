"""The JWT key set and verifier of this deployment, built from the settings.

Keys come from ``JWT_SIGNING_KEYS`` (``kid:base64-secret,...``): the first
signs new tokens, every one verifies, so a rotation is "prepend the new key,
wait one access-token lifetime, drop the old one". Without that variable one
HS256 key is derived from SESSION_SECRET, its ``kid`` a fingerprint of the key
(so tokens signed under an older SESSION_SECRET fail as "unknown key").

>>> keys = build_token_keys(load_settings({"SESSION_SECRET": "x" * 32}))
>>> token = keys.sign({"sub": "1"}, ttl=900)
>>> keys.verifier.verify(token)["sub"]
'1'
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from vedina._native import JwtKeySet, JwtVerifier
from vedina.config import Settings
from vedina.security.keys import b64decode, derive_key

ISSUER = "vedina"
AUDIENCE = "vedina-api"
ALGORITHM = "HS256"
LEEWAY_SECONDS = 10.0


@dataclass(frozen=True)
class TokenKeys:
    keyset: JwtKeySet
    verifier: JwtVerifier
    signing_kid: str

    def sign(self, claims: dict[str, object], *, ttl: int) -> str:
        """Sign ``claims`` with the current key, adding iss, aud, iat and exp."""
        now = int(time.time())
        return self.keyset.encode(
            {**claims, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl}, kid=self.signing_kid
        )


def signing_secrets(settings: Settings) -> list[tuple[str, bytes]]:
    """(kid, secret) pairs, the signing key first."""
    if settings.jwt_signing_keys:
        pairs = []
        for item in settings.jwt_signing_keys.split(","):
            kid, _, secret = item.strip().partition(":")
            pairs.append((kid, b64decode(secret)))
        return pairs
    secret = derive_key(settings.session_secret, "jwt-hs256")
    return [("ss-" + hashlib.sha256(b"kid:" + secret).hexdigest()[:12], secret)]


def build_token_keys(settings: Settings) -> TokenKeys:
    keyset = JwtKeySet()
    pairs = signing_secrets(settings)
    for kid, secret in pairs:
        keyset.add_hmac_key(kid, ALGORITHM, secret)
    verifier = JwtVerifier(keyset, issuer=ISSUER, audience=AUDIENCE, leeway=LEEWAY_SECONDS)
    return TokenKeys(keyset=keyset, verifier=verifier, signing_kid=pairs[0][0])
