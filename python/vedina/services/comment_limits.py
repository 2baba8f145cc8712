"""Posting budget per account: the ``comments`` GCRA policy (``RATE_LIMIT_COMMENTS``, default
``5/1m burst 5``: five at once, then one every twelve seconds), shared by the account's profiles,
so deleting a profile and making another gains nothing.

Charged by :meth:`vedina.services.comments.CommentService.post` (comments and
replies) and ``edit`` once the body is valid and the author may post, keyed by the account,
on the same limiter as the request policies (host tier, Redis when
configured). ``RATE_LIMIT_ENABLED=false`` or ``RATE_LIMIT_COMMENTS=off``
switch it off.

>>> await CommentRateLimit(settings).charge(profile_id=7, user_id=3)   # or TooManyRequests (429)
"""

from __future__ import annotations

import math

from vedina.config import RATE_LIMIT_VARS, Settings, parse_rate
from vedina.errors import TooManyRequests
from vedina.security.ratelimit.limiter import process_limiter
from vedina.security.ratelimit.policies import Policy

POLICY = "comments"


class CommentRateLimit:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        rate = parse_rate(RATE_LIMIT_VARS[POLICY], settings.rate_limit_comments)
        self._policy = None if rate is None else Policy(POLICY, rate.interval_us, rate.burst)

    @property
    def enabled(self) -> bool:
        return self._policy is not None and self._settings.rate_limit_enabled

    async def charge(self, *, profile_id: int, user_id: int) -> None:
        """``profile_id`` names who posts (for the message); the budget is the account's."""
        if not self.enabled:
            return
        assert self._policy is not None
        decision = await process_limiter(self._settings).decide(self._policy, f"account:{user_id}")
        if not decision.allowed:
            wait = max(1, math.ceil(decision.retry_after))
            raise TooManyRequests(
                f"Too many comments from this account: try again in {wait} s",
                details={"policy": POLICY, "retry_after": wait}, headers={"retry-after": str(wait)},
            )
