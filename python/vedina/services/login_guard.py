"""Failed logins per account: password guessing on one account is slowed down
whatever IPs it comes from (the per-IP side is the ``auth`` rate-limit policy).

Each failed login for an email costs one unit of the ``login_failures`` GCRA
policy (``RATE_LIMIT_LOGIN_FAILURES``, default 5 at once, then one per 3
minutes); when none is left, logins for that email are refused with 429 before
the password is even checked. Success costs nothing. The key is a hash of the
normalised email, so unknown and known emails behave alike.
"""

from __future__ import annotations

import hashlib
import math

from vedina.config import RATE_LIMIT_VARS, Settings, parse_rate
from vedina.errors import TooManyRequests
from vedina.security.ratelimit.limiter import process_limiter
from vedina.security.ratelimit.policies import Policy

POLICY = "login_failures"


class LoginGuard:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        rate = parse_rate(RATE_LIMIT_VARS[POLICY], settings.rate_limit_login_failures)
        self._policy = None if rate is None else Policy(POLICY, rate.interval_us, rate.burst)

    @property
    def enabled(self) -> bool:
        return self._policy is not None and self._settings.rate_limit_enabled

    @staticmethod
    def _key(email: str) -> str:
        return "email:" + hashlib.sha256(email.encode()).hexdigest()[:32]

    async def check(self, email: str) -> None:
        """Raise 429 when this account has no failed attempt left."""
        if not self.enabled:
            return
        decision = await process_limiter(self._settings).decide(self._policy, self._key(email), cost=0)
        if decision.remaining < 1:
            # Back to one attempt when the TAT is within (burst - 1) intervals of now.
            wait = max(1, math.ceil(decision.reset_after - (self._policy.burst - 1) * self._policy.period_seconds))
            raise TooManyRequests(
                "Too many failed logins for this account; try again later",
                details={"policy": POLICY, "retry_after": wait}, headers={"retry-after": str(wait)},
            )

    async def failed(self, email: str) -> None:
        if self.enabled:
            await process_limiter(self._settings).decide(self._policy, self._key(email), cost=1)
