"""Signed playback URLs: ``/api/media/<asset>?t=<token>``, checked in Rust with no I/O.

A token binds a user, an asset, an expiry (unix seconds) and optionally a
playback session (format in ``rust_ext/src/playback.rs``), MAC'd with a key
derived from ``SESSION_SECRET`` for this purpose only. Players that cannot
send headers (``<video>``, ffprobe) carry it in the query string, so every
range request proves what the playback endpoint granted. Verification takes
the clock as an argument, so expiry is testable.

>>> tokens = PlaybackTokens(b"k" * 32, ttl=300)
>>> token = tokens.issue(user_id=7, asset_id=42, session_id="s1", now=1_700_000_000)
>>> tokens.verify(token, asset_id=42, now=1_700_000_100).user_id
7
>>> tokens.verify(token, asset_id=42, now=1_700_000_300)
Traceback (most recent call last):
vedina.errors.Refused: The playback token has expired
"""

from __future__ import annotations

import time

from vedina._native import MalformedSignature, PlaybackGrant, PlaybackSigner, SignatureExpired, SignatureMismatch
from vedina.config import Settings
from vedina.errors import Refused
from vedina.security.keys import derive_key

QUERY_PARAMETER = "t"
TOKEN_INVALID = "playback_token_invalid"
TOKEN_EXPIRED = "playback_token_expired"

__all__ = ["QUERY_PARAMETER", "TOKEN_EXPIRED", "TOKEN_INVALID", "PlaybackGrant", "PlaybackTokens"]


class PlaybackTokens:
    def __init__(self, key: bytes, *, ttl: int) -> None:
        self._signer = PlaybackSigner(key)
        self.ttl = ttl

    @classmethod
    def from_settings(cls, settings: Settings) -> PlaybackTokens:
        return cls(derive_key(settings.session_secret, "playback"), ttl=settings.playback_url_ttl_seconds)

    def issue(self, *, user_id: int, asset_id: int, session_id: str | None = None, now: int | None = None) -> str:
        """A token valid for ``ttl`` seconds from ``now`` (default: the system clock)."""
        expires_at = (int(time.time()) if now is None else now) + self.ttl
        return self._signer.sign(user_id=user_id, asset_id=asset_id, expires_at=expires_at, session_id=session_id)

    def expires_at(self, token: str) -> int:
        """The expiry written in a token this object issued (no check)."""
        return int(token.partition(".")[0])

    def verify(self, token: str, *, asset_id: int, now: int | None = None) -> PlaybackGrant:
        """The grant, or :class:`Refused` (403) ``playback_token_expired`` / ``playback_token_invalid``."""
        try:
            return self._signer.verify(token, asset_id=asset_id, now=now)
        except SignatureExpired:
            raise Refused(TOKEN_EXPIRED, "The playback token has expired",
                          details={"parameter": QUERY_PARAMETER}) from None
        except (MalformedSignature, SignatureMismatch):
            raise Refused(TOKEN_INVALID, "The playback token is not valid for this media",
                          details={"parameter": QUERY_PARAMETER}) from None
