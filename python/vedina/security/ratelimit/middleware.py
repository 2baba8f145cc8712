"""Rate limiting as two global Robyn middlewares (registered by ``vedina.app``).

``before`` decides; a refused request is answered here with 429, ``Retry-After``,
the ``RateLimit-*`` headers and the common error body (a before-middleware
that answers skips the after-middlewares, so the standard headers are added
here too). An allowed request carries its decision to ``after`` in an
internal request header, which adds ``RateLimit-*`` to the answer.

That internal header cannot be forged: ``before`` overwrites it on every
request (emptied when the path is exempt) and its value starts with a random
token of this process, which ``after`` checks.
"""

from __future__ import annotations

import math
import secrets

from robyn import Request, Response

from vedina.config import Settings, parse_trusted_proxies
from vedina.errors import TooManyRequests
from vedina.http.middleware import request_id_of
from vedina.http.responses import apply_standard_headers, error_response
from vedina.metrics import RATE_LIMITED
from vedina.security.ratelimit.limiter import RateLimiter, process_limiter
from vedina.security.ratelimit.policies import build_policies, policy_for
from vedina.security.ratelimit.principal import principal_of

DECISION_HEADER = "x-vedina-ratelimit"


class RateLimitMiddleware:
    """>>> limiting = RateLimitMiddleware(settings)
    >>> app.before_request()(limiting.before); app.after_request()(limiting.after)
    """

    def __init__(self, settings: Settings, *, limiter: RateLimiter | None = None) -> None:
        self.settings = settings
        self.policies = build_policies(settings)
        self.proxies = parse_trusted_proxies(settings.trusted_proxies)
        self._token = secrets.token_hex(16)
        self._limiter = limiter

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter if self._limiter is not None else process_limiter(self.settings)

    async def before(self, request: Request) -> Request | Response:
        request.headers.set(DECISION_HEADER, "")
        policy = policy_for(self.policies, request.method, request.url.path, request.headers.get("range"))
        if policy is None:
            return request
        decision = await self.limiter.decide(policy, principal_of(request, self.proxies))
        if not decision.allowed:
            RATE_LIMITED.labels(policy.name).inc()
            retry_after = max(1, math.ceil(decision.retry_after))
            refusal = TooManyRequests(
                f"Too many requests: try again in {retry_after} s",
                details={"policy": policy.name, "retry_after": retry_after},
                headers=decision.headers(),
            )
            return apply_standard_headers(error_response(refusal), request_id=request_id_of(request), path=request.url.path)
        headers = decision.headers()
        request.headers.set(
            DECISION_HEADER,
            f"{self._token} {headers['ratelimit-limit']} {headers['ratelimit-remaining']} {headers['ratelimit-reset']}",
        )
        return request

    def after(self, request: Request, response: Response) -> Response:
        token, _, values = (request.headers.get(DECISION_HEADER) or "").partition(" ")
        if token and secrets.compare_digest(token, self._token):
            limit, remaining, reset = values.split(" ")
            response.headers.set("ratelimit-limit", limit)
            response.headers.set("ratelimit-remaining", remaining)
            response.headers.set("ratelimit-reset", reset)
        return response
