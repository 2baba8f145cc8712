"""Encrypting API key secrets at rest: AES-256-GCM with the row's key id as associated data.

The SigV4 check needs the secret itself (HMAC), so it cannot be stored as a
one-way hash; it is encrypted instead, with a server key that lives outside the
database (``API_KEY_ENCRYPTION_KEY``). A database dump alone reveals no secret,
and a ciphertext copied onto another key's row fails to decrypt (the
associated data binds it to its ``access_key_id``).

Layout: 12-byte random nonce || ciphertext || 16-byte tag.

>>> box = SecretBox(bytes(32))
>>> box.decrypt(box.encrypt(b"s3cr3t", aad=b"AK1"), aad=b"AK1")
b's3cr3t'
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vedina.config import Settings
from vedina.security.keys import b64decode, derive_key

NONCE_BYTES = 12


class SecretBoxError(Exception):
    """A ciphertext does not decrypt under this key (wrong key, tampered, or moved)."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.api_key_encryption_key:
            return cls(b64decode(settings.api_key_encryption_key))
        # Development and test only: config refuses production without the variable.
        return cls(derive_key(settings.session_secret, "api-key-encryption"))

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, *, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except (InvalidTag, ValueError):
            raise SecretBoxError("cannot decrypt") from None
