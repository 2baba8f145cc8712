"""Rate limiting as two global Robyn middlewares (registered by ``vedina.app``).

``before`` decides; a refused request is answered here with 429, ``Retry-After``,
the ``RateLimit-*`` headers and the common error body (a before-middleware
that answers skips the after-middlewares, so the standard headers are added
here too). An allowed request carries its decision to ``after`` in the
request context (:mod:`vedina.http.context`), which adds ``RateLimit-*`` to
the answer.
"""

from __future__ import annotations

import math

from robyn import Request, Response

from vedina.config import Settings, parse_trusted_proxies
from vedina.errors import TooManyRequests
from vedina.http.context import context_of
from vedina.http.responses import apply_standard_headers, error_response
from vedina.metrics import RATE_LIMITED
from vedina.security.ratelimit.limiter import RateLimiter, process_limiter
from vedina.security.ratelimit.policies import build_policies, policy_for
from vedina.security.ratelimit.principal import principal_of


class RateLimitMiddleware:
    """>>> limiting = RateLimitMiddleware(settings)
    >>> app.before_request()(limiting.before); app.after_request()(limiting.after)
    """

    def __init__(self, settings: Settings, *, limiter: RateLimiter | None = None) -> None:
        self.settings = settings
        self.policies = build_policies(settings)
        for name in self.policies:  # zero-valued series, so a first 429 shows in rate() and increase()
            RATE_LIMITED.labels(name)
        self.proxies = parse_trusted_proxies(settings.trusted_proxies)
        self._limiter = limiter

    @property
    def limiter(self) -> RateLimiter:
        if self._limiter is None:  # opened in the worker that serves, on its first request
            self._limiter = process_limiter(self.settings)
        return self._limiter

    async def before(self, request: Request) -> Request | Response:
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
            context = context_of(request)
            return apply_standard_headers(error_response(refusal), request_id=context.request_id, path=request.url.path)
        context_of(request).rate_headers = decision.headers()
        return request

    def after(self, request: Request, response: Response) -> Response:
        headers = context_of(request).rate_headers
        if headers:
            for name in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
                response.headers.set(name, headers[name])
        return response
