"""The arithmetic of billing: periods, proration and which plan change is an upgrade.

Pure functions on integers and datetimes, no I/O; amounts are integers in the
currency's minor unit (cents) everywhere, never floats.

>>> add_period(datetime(2026, 1, 31), "month")
datetime.datetime(2026, 2, 28, 0, 0)
>>> prorate(old_price=999, new_price=1999, remaining_seconds=15 * 86400, period_seconds=30 * 86400)
500
"""

from __future__ import annotations

import calendar
from datetime import datetime

from vedina.storage.schema import PLAN_TIERS


def add_period(start: datetime, period: str, count: int = 1) -> datetime:
    """``start`` plus ``count`` months or years, the day clamped to the month's length
    (Jan 31 -> Feb 28; the next period then runs Feb 28 -> Mar 28)."""
    months = count * (12 if period == "year" else 1)
    if period not in ("month", "year"):
        raise ValueError(f"unknown billing period {period!r}")
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def prorate(*, old_price: int, new_price: int, remaining_seconds: int, period_seconds: int) -> int:
    """What an immediate upgrade costs now: the price difference for the part of the
    period that is left, **rounded down to the minor unit** (the customer never pays a
    fraction of a cent more than the exact share). Integer arithmetic only.

    ``(new_price - old_price) * remaining_seconds // period_seconds``; never negative.
    """
    if period_seconds <= 0 or remaining_seconds <= 0 or new_price <= old_price:
        return 0
    remaining_seconds = min(remaining_seconds, period_seconds)
    return (new_price - old_price) * remaining_seconds // period_seconds


def tier_rank(tier: str) -> int:
    return PLAN_TIERS.index(tier)


def is_upgrade(*, current: dict, target: dict) -> bool:
    """Up a tier, or the same tier for more money (e.g. more screens): takes effect at once.
    Anything else is a downgrade, which waits for the period's end."""
    if tier_rank(target["tier"]) != tier_rank(current["tier"]):
        return tier_rank(target["tier"]) > tier_rank(current["tier"])
    return target["price_minor"] > current["price_minor"]
