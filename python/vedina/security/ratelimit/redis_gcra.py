"""The cluster tier: GCRA in Redis, one Lua script, one round trip per decision.

The script applies the formulas of ``rust_ext/src/ratelimit/gcra.rs`` (the
host tier) unchanged, in integer microseconds instead of nanoseconds: Lua
numbers are doubles, exact up to 2^53, and a Unix time in microseconds
(about 1.7e15) stays far below that. Every policy's T is a whole number of
microseconds (see :class:`~vedina.security.ratelimit.policies.Policy`), so the
two tiers take the same decisions; the tests replay one sequence through both.

"Now" is Redis's own ``TIME``: every host asks the same clock, so hosts with
skewed clocks still agree. Each key expires when it would be back at a full
burst, so idle keys cost nothing.
"""

from __future__ import annotations

from typing import Any

from vedina.security.ratelimit.decision import Decision
from vedina.security.ratelimit.policies import Policy

KEY_PREFIX = "vedina:rl:"

GCRA_LUA = """
-- KEYS[1]  the key; its value is the TAT, in microseconds since the Unix epoch
-- ARGV[1]  T: the emission interval in microseconds
-- ARGV[2]  burst (>= 1)
-- ARGV[3]  cost (0 <= cost <= burst)
-- ARGV[4]  optional now in microseconds, for tests only (else Redis TIME)
-- returns {allowed 1|0, remaining, retry_after_us, reset_after_us, tat_us}
local T = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end

-- floor(a / b) for integers, exact even where a / b rounds up to the next integer
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local tau = T * burst
local stored = tonumber(redis.call('GET', KEYS[1])) or 0
local tat0 = math.max(stored, now)
local new_tat = tat0 + T * cost
local allow_at = new_tat - tau

if now >= allow_at then
  local reset_after = new_tat - now
  if reset_after > 0 then
    redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', idiv(reset_after + 999, 1000))
  end
  return {1, idiv(tau - reset_after, T), 0, reset_after, new_tat}
end
local remaining = idiv(tau - (tat0 - now), T)
if remaining < 0 then
  remaining = 0
end
return {0, remaining, allow_at - now, tat0 - now, stored}
"""


class RedisGCRA:
    """GCRA decisions in Redis (``redis.asyncio`` client), EVALSHA with a reload
    when Redis forgot the script. Raises the client's errors: the caller falls back.

    >>> gcra = RedisGCRA(redis.asyncio.from_url("redis://127.0.0.1:6379"))
    >>> (await gcra.decide("api:ip:192.0.2.1", Policy("api", 200_000, 10))).remaining
    9
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._script = client.register_script(GCRA_LUA)

    async def raw(self, key: str, policy: Policy, *, cost: int = 1, now_us: int | None = None) -> list[int]:
        """The script's reply; ``now_us`` replaces Redis TIME (tests only)."""
        args = [policy.interval_us, policy.burst, cost]
        if now_us is not None:
            args.append(now_us)
        return [int(value) for value in await self._script(keys=[KEY_PREFIX + key], args=args)]

    async def decide(self, key: str, policy: Policy, *, cost: int = 1) -> Decision:
        allowed, remaining, retry_after_us, reset_after_us, _ = await self.raw(key, policy, cost=cost)
        return Decision(
            allowed=bool(allowed), limit=policy.burst, remaining=remaining,
            retry_after=retry_after_us / 1e6, reset_after=reset_after_us / 1e6, tier="cluster",
        )
