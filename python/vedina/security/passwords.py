"""Password hashing (Argon2id) and the password policy.

Hashing costs tens of milliseconds of CPU by design, so the async helpers run
it in a thread and the event loop keeps serving other requests.

>>> check_policy("correct horse battery staple")      # None: acceptable
>>> check_policy("password1234")
Traceback (most recent call last):
vedina.errors.ValidationFailed: This password is too common
"""

from __future__ import annotations

import asyncio
import unicodedata
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vedina.errors import ValidationFailed

MIN_LENGTH = 10
MAX_LENGTH = 256  # Argon2 accepts more; a cap keeps a request's hashing cost bounded

# argon2-cffi's defaults are RFC 9106's second recommended option (Argon2id,
# t=3, m=64 MiB, p=4); stored hashes carry their parameters, so raising them
# later only affects new hashes (see needs_rehash).
_hasher = PasswordHasher()
# Verified against when the email is unknown, so both answers take as long.
_DUMMY_HASH = _hasher.hash("vedina-timing-equaliser")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = Path(__file__).with_name("common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def normalise(password: str) -> str:
    # NFKC so that the same password typed on different keyboards hashes alike.
    return unicodedata.normalize("NFKC", password)


def check_policy(password: str, *, email: str = "") -> None:
    """Raise ValidationFailed (field ``password``) unless the password is acceptable."""

    def fail(message: str) -> ValidationFailed:
        return ValidationFailed(message, details={"field": "password"})

    password = normalise(password)
    if len(password) < MIN_LENGTH:
        raise fail(f"Password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise fail(f"Password must be at most {MAX_LENGTH} characters")
    if password.lower() in common_passwords():
        raise fail("This password is too common")
    local = email.split("@", 1)[0].lower()
    if local and len(local) >= 4 and local in password.lower():
        raise fail("Password must not contain the email address")


def hash_password(password: str) -> str:
    return _hasher.hash(normalise(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing hash still costs one verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, normalise(password)) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password, password_hash, password)
