"""Keys derived from the settings: one root secret, a separate key per purpose.

HKDF-SHA256 (RFC 5869) with a distinct ``info`` label per purpose, so a key
leaked from one use (say, the CSRF key) tells nothing about another (the JWT
key), and rotating SESSION_SECRET rotates every derived key at once.

>>> len(derive_key("a" * 32, "csrf"))
32
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(root_secret: str, purpose: str, *, length: int = 32) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=f"vedina/{purpose}".encode())
    return hkdf.derive(root_secret.encode("utf-8"))


def b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional (what operators paste)."""
    text = text.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
