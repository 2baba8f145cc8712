"""Login attempts per account: password guessing on one account is slowed down
whatever IPs it comes from (the per-IP side is the ``auth`` rate-limit policy).

Every login attempt for an email costs one unit of the ``login_account`` GCRA
policy (``RATE_LIMIT_LOGIN_ACCOUNT``, default 10 at once, then one a minute),
charged atomically *before* the password is checked: charging only failures
after the (slow) password check would let a burst of concurrent guesses all
pass the check first. When nothing is left, the attempt is refused with 429
without looking at the password. The key is a hash of the normalised email,
so unknown and known emails behave alike.

An attempt that carries a valid device token for the account (a device that
logged in before, :mod:`vedina.security.devices`) is charged to that device's
own budget instead: a flood of wrong passwords cannot lock the owner's devices
out. The trade-off: a stolen device token buys its holder one device's budget
of guesses (it still needs the password), and a new device of the owner waits
like everyone else while the account is under attack.
"""

from __future__ import annotations

import math

from vedina.config import RATE_LIMIT_VARS, Settings, parse_rate
from vedina.errors import TooManyRequests
from vedina.security.devices import account_of
from vedina.security.ratelimit.limiter import process_limiter
from vedina.security.ratelimit.policies import Policy

POLICY = "login_account"


class LoginGuard:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        rate = parse_rate(RATE_LIMIT_VARS[POLICY], settings.rate_limit_login_account)
        self._policy = None if rate is None else Policy(POLICY, rate.interval_us, rate.burst)

    @property
    def enabled(self) -> bool:
        return self._policy is not None and self._settings.rate_limit_enabled

    async def attempt(self, email: str, *, device: str | None = None) -> None:
        """Charge one attempt for this account (or for ``device``, a known device of
        it: see the module docs); 429 when none is left."""
        if not self.enabled:
            return
        key = f"device:{device}" if device else f"email:{account_of(email)}"
        decision = await process_limiter(self._settings).decide(self._policy, key, cost=1)
        if not decision.allowed:
            wait = max(1, math.ceil(decision.retry_after))
            raise TooManyRequests(
                "Too many login attempts for this account; try again later",
                details={"policy": POLICY, "retry_after": wait}, headers={"retry-after": str(wait)},
            )
