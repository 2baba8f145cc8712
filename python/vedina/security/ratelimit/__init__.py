"""Rate limiting: GCRA per policy and principal, on two tiers.

- :mod:`.policies`  which policy limits a request (one table of route groups)
- :mod:`.principal` who it counts against (identity, else client IP via trusted proxies)
- :mod:`.limiter`   the host tier (shared memory) and the cluster tier (Redis) with fallback
- :mod:`.redis_gcra` the cluster tier's Lua script
- :mod:`.middleware` the before/after Robyn middlewares

>>> limiting = RateLimitMiddleware(load_settings())
"""

from vedina.security.ratelimit.decision import Decision
from vedina.security.ratelimit.limiter import RateLimiter, default_shm_path, open_limiter
from vedina.security.ratelimit.middleware import RateLimitMiddleware
from vedina.security.ratelimit.policies import Policy, build_policies, group_of, policy_for
from vedina.security.ratelimit.principal import client_ip, principal_of
from vedina.security.ratelimit.redis_gcra import GCRA_LUA, RedisGCRA

__all__ = [
    "GCRA_LUA",
    "Decision",
    "Policy",
    "RateLimitMiddleware",
    "RateLimiter",
    "RedisGCRA",
    "build_policies",
    "client_ip",
    "default_shm_path",
    "group_of",
    "open_limiter",
    "policy_for",
    "principal_of",
]
