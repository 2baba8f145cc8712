"""Device tokens: proof that a client has logged in to an account before.

The per-account login limit (``login_account``) stops password guessing on one
account from any number of IPs, but it also lets anyone lock an account out by
spending its budget with wrong passwords. A client that logged in successfully
gets a device token, bound to the account (a hash of its normalised email) and
signed with a key derived from ``SESSION_SECRET``; a login attempt that carries
a valid one for the same account is charged to that device's own budget
instead of the account's, so the owner's devices still get in while a flood of
wrong passwords keeps everyone else out.

The token is ``<payload>.<mac>`` in base64url: ``payload`` is the account hash,
a random device id and the issue time; ``mac`` is HMAC-SHA256 over it.

>>> devices = DeviceTokens(b"k" * 32)
>>> token = devices.issue("viewer@example.org")
>>> devices.device_for(token, "viewer@example.org") is not None
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

COOKIE = "vedina_device"
LIFETIME_SECONDS = 365 * 24 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def account_of(email: str) -> str:
    """The account part of a device token (and of the per-account limit key): a hash of the email."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


class DeviceTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def issue(self, email: str, *, now: float | None = None) -> str:
        payload = f"{account_of(email)}:{secrets.token_hex(12)}:{int(now or time.time())}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def device_for(self, token: str | None, email: str, *, now: float | None = None) -> str | None:
        """The device id when ``token`` is genuine, unexpired and for this account; else None."""
        if not token or len(token) > 256 or "." not in token:
            return None
        body, _, mac = token.partition(".")
        try:
            payload, presented = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(self._mac(payload), presented):
            return None
        try:
            account, device, issued = payload.decode().split(":")
            issued_at = int(issued)
        except ValueError:
            return None
        if account != account_of(email) or (now or time.time()) - issued_at > LIFETIME_SECONDS:
            return None
        return device
