"""Time in one place, so storage code and tests agree on UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC datetime (what the DATETIME columns hold), second precision."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def now_ms() -> int:
    return int(time.time() * 1000)
