"""What an account may stream now, from its live subscription: the plan source of playback.

An entitlement is the plan's tier, its screens (concurrent streams) and its best
rendition height, valid until a moment computed from the subscription:

- ``trialing``/``active``: the period's end, plus ``RENEWAL_GRACE`` while the
  subscription renews (the renewal job charges at the period's end; a cancelled
  one ends exactly then);
- ``past_due``: ``PAST_DUE_GRACE_DAYS`` after the renewal first failed;
- ``incomplete`` (unpaid), ``canceled``, ``expired``: nothing.

An account without a live subscription gets the *unsubscribed* entitlement
(``PLAYBACK_DEFAULT_PLAN``: ``none`` in production, or a tier for a free plan, with
``MAX_CONCURRENT_STREAMS`` screens).

Answers come from a per-worker near cache keyed by user; every billing write
publishes ``billing:user:<id>``, so a change reaches every worker at once, and
the validity moment makes expiry exact without any write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec

from vedina.storage.near_cache import NearCache
from vedina.storage.plans import PlanRepository
from vedina.storage.subscriptions import SubscriptionRepository

RENEWAL_GRACE = timedelta(days=1)
NO_PLAN = "none"


def billing_key(user_id: int) -> str:
    """The invalidation key of an account's billing state."""
    return f"billing:user:{user_id}"


class Entitlement(msgspec.Struct, frozen=True, kw_only=True):
    tier: str | None  # None: nothing may be streamed
    screens: int
    max_height: int | None  # None: every rendition
    until_ms: int | None  # None: no end (the unsubscribed entitlement)
    subscription_id: int | None = None

    def at(self, now_ms: int, unsubscribed: Entitlement) -> Entitlement:
        """This entitlement at ``now_ms``: past its end, the unsubscribed one."""
        return self if self.until_ms is None or now_ms < self.until_ms else unsubscribed


def _ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


class Entitlements:
    def __init__(
        self, *, subscriptions: SubscriptionRepository, plans: PlanRepository, cache: NearCache,
        unsubscribed_tier: str, unsubscribed_screens: int, past_due_grace: timedelta,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._subscriptions = subscriptions
        self._plans = plans
        self._cache = cache
        self.unsubscribed = Entitlement(
            tier=None if unsubscribed_tier == NO_PLAN else unsubscribed_tier, screens=unsubscribed_screens,
            max_height=None, until_ms=None,
        )
        self._past_due_grace = past_due_grace
        self.clock = clock  # injectable: tests move time

    async def entitlement_of(self, *, user_id: int) -> Entitlement:
        key = billing_key(user_id)
        granted = await self._cache.get_or_load(key, (key,), lambda: self._load(user_id))
        return granted.at(int(self.clock() * 1000), self.unsubscribed)

    async def _load(self, user_id: int) -> Entitlement:
        subscription = await self._subscriptions.live_of(user_id)
        if subscription is None or subscription["status"] == "incomplete":
            return self.unsubscribed
        terms = await self._plans.version_of(subscription["plan_version_id"])
        if subscription["status"] == "past_due":
            until = subscription["past_due_since"] + self._past_due_grace
        else:
            until = subscription["current_period_end"]
            if not subscription["cancel_at_period_end"]:
                until += RENEWAL_GRACE
        return Entitlement(tier=terms["tier"], screens=terms["screens"], max_height=terms["max_height"],
                           until_ms=_ms(until), subscription_id=subscription["id"])
