"""The answer of either tier, and how it reads as HTTP headers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int  # the burst: requests possible at once, what ``remaining`` counts down from
    remaining: int
    retry_after: float  # seconds until this request would pass; 0.0 when allowed
    reset_after: float  # seconds until the key is back at a full burst
    tier: Literal["host", "cluster"]

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` (IETF draft, whole seconds rounded up), plus ``Retry-After`` when refused.

        >>> Decision(False, 5, 0, 0.2, 1.5, "host").headers()["retry-after"]
        '1'
        """
        headers = {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(math.ceil(self.reset_after)),
        }
        if not self.allowed:
            headers["retry-after"] = str(max(1, math.ceil(self.retry_after)))
        return headers
