"""One-time tokens (email verification, password reset): random, stored as sha256, single use.

The raw token exists only in the email sent to the user: the mail job creates
it at delivery time, so not even the outbox row holds it.

>>> raw = new_token(); len(digest(raw))
64
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from vedina.storage.clock import utcnow
from vedina.storage.users import OneTimeTokenRepository

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"
# Not a token: tells an account's owner that someone tried to register their address.
ACCOUNT_EXISTS = "account_exists"
LIFETIMES = {VERIFY_EMAIL: timedelta(days=2), RESET_PASSWORD: timedelta(minutes=30)}


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    # The tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


async def issue(conn: AsyncConnection, *, user_id: int, purpose: str) -> str:
    token = new_token()
    await OneTimeTokenRepository.insert(
        conn, user_id=user_id, purpose=purpose, token_hash=digest(token), expires_at=utcnow() + LIFETIMES[purpose]
    )
    return token


async def consume(conn: AsyncConnection, *, token: str, purpose: str) -> int | None:
    """The user id the token was for, or None (unknown, used, expired); voids the user's other tokens of that purpose."""
    return await OneTimeTokenRepository.consume(conn, token_hash=digest(token), purpose=purpose)
