"""Which policy limits a request: one table of route groups, matched in order.

    exempt   /health, /ready, /metrics             never limited (probes, scrapers)
    auth     POST|PUT|PATCH|DELETE /api/auth/...  strict: login, registration, passwords, refresh
    stream   GET|HEAD /api/media/...               stream starts (no Range, or a range from byte 0)
    api      everything else                       general (GET /api/auth/whoami included)

A request for one range that starts after byte 0 is a player continuing or
seeking in a stream it already started: it counts against ``api``, so a long
film does not eat the stream-start budget but is still limited. Anything else
is a stream start, judged by what the media endpoint will serve: several
ranges (merged, ``bytes=1-1,0-`` is the whole file), a range the endpoint
ignores (``bytes=5-3``: the whole file), a suffix range, or none.

>>> from vedina.config import load_settings
>>> policies = build_policies(load_settings({"RATE_LIMIT_API": "5/s burst 10"}))
>>> policy_for(policies, "GET", "/api/movies", None).name, policies["api"].interval_us
('api', 200000)
>>> policy_for(policies, "GET", "/health", None) is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vedina.config import RATE_LIMIT_VARS, Settings, parse_rate

EXEMPT_PATHS = ("/health", "/ready", "/metrics")
AUTH_PREFIX = "/api/auth"
STREAM_PREFIX = "/api/media"
_READ_METHODS = frozenset({"GET", "HEAD"})
# A continuation: exactly one well-formed byte range, starting after byte 0.
_ONE_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]{1,19})\s*-\s*([0-9]{0,19})\s*", re.IGNORECASE)


def is_continuation(range_header: str | None) -> bool:
    """True when the media endpoint will serve bytes that all come after byte 0."""
    match = _ONE_RANGE.fullmatch(range_header) if range_header else None
    if match is None:
        return False
    start, end = int(match[1]), match[2]
    return start > 0 and (not end or int(end) >= start)


@dataclass(frozen=True, slots=True)
class Policy:
    """A named GCRA limit in the integer unit both tiers share (microseconds).

    ``interval_us`` is T (one request's worth of time), ``burst`` the requests
    allowed at once from idle; the host tier gets ``period_seconds`` with
    ``limit=1`` so its nanosecond T is exactly ``interval_us * 1000``.
    """

    name: str
    interval_us: int
    burst: int

    @property
    def period_seconds(self) -> float:
        return self.interval_us / 1e6


# The policies chosen by a request's method and path (login_account is charged by the login service).
REQUEST_GROUPS = ("auth", "stream", "api")


def build_policies(settings: Settings) -> dict[str, Policy]:
    """Policy name -> Policy, for every policy not switched off ("off")."""
    policies = {}
    for name in REQUEST_GROUPS:
        var = RATE_LIMIT_VARS[name]
        rate = parse_rate(var, getattr(settings, f"rate_limit_{name}"))
        if rate is not None:
            policies[name] = Policy(name, rate.interval_us, rate.burst)
    return policies


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def group_of(method: str, path: str, range_header: str | None) -> str | None:
    """The policy name for a request, or None for an exempt path."""
    if path in EXEMPT_PATHS:
        return None
    if _under(path, AUTH_PREFIX) and method not in _READ_METHODS:
        return "auth"
    if method in _READ_METHODS and _under(path, STREAM_PREFIX):
        if not is_continuation(range_header):
            return "stream"
    return "api"


def policy_for(policies: dict[str, Policy], method: str, path: str, range_header: str | None) -> Policy | None:
    """The policy limiting this request, or None (exempt path, or its policy is off)."""
    group = group_of(method, path, range_header)
    return policies.get(group) if group is not None else None
