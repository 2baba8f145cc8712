"""Plans: what a subscription can buy. Admins create and change them; everyone reads them.

Changing a plan's terms (price, currency, period, screens, quality, trial)
adds a version; subscriptions keep the version they bought until they change
plan, so a price change never rewrites what a customer signed up for.

The offer (the active plans) is a hot read -- every pricing page -- answered
from a per-worker near cache; a plan change publishes ``billing:plans``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.errors import Conflict, NotFound
from vedina.storage.invalidation import Invalidations
from vedina.storage.near_cache import NearCache
from vedina.storage.plans import TERMS, PlanRepository

PLANS_KEY = "billing:plans"


class Plan(msgspec.Struct, kw_only=True):
    id: int
    code: str
    name: str
    tier: str
    description: str
    active: bool
    version: int
    version_id: int
    price_minor: int
    currency: str
    billing_period: str
    screens: int
    max_height: int
    trial_days: int


class PlanList(msgspec.Struct, kw_only=True):
    items: list[Plan]


def plan_of(row: dict[str, Any]) -> Plan:
    return Plan(
        id=row["plan_id"], code=row["code"], name=row["name"], tier=row["tier"], description=row["description"],
        active=bool(row["active"]), version=row["version"], version_id=row["version_id"],
        **{name: row[name] for name in TERMS},
    )


class PlanService:
    def __init__(self, *, engine: AsyncEngine, plans: PlanRepository, offer: NearCache,
                 invalidations: Invalidations) -> None:
        self._engine = engine
        self._plans = plans
        self._offer = offer
        self._invalidations = invalidations

    async def list(self) -> PlanList:
        """The active plans, cheapest first (from memory on a hit)."""
        return await self._offer.get_or_load("active", (PLANS_KEY,), self._load_offer)

    async def _load_offer(self) -> PlanList:
        return PlanList(items=[plan_of(r) for r in await self._plans.current(active_only=True)])

    async def get(self, *, plan_id: int) -> Plan:
        """An active plan (an inactive one is 404: it is not on offer)."""
        found = next((plan for plan in (await self.list()).items if plan.id == plan_id), None)
        if found is None:
            raise NotFound(f"Plan {plan_id} not found", details={"id": plan_id})
        return found

    async def create(self, *, code: str, name: str, tier: str, description: str, active: bool,
                     terms: dict[str, Any]) -> Plan:
        try:
            async with self._engine.begin() as conn:
                plan_id = await self._plans.insert(conn, code=code, name=name, tier=tier, description=description,
                                                   active=active)
                await self._plans.add_version(conn, plan_id, terms)
                row = await self._plans.current_of(conn, plan_id)
        except IntegrityError:
            raise Conflict(f"A plan with code {code!r} exists", details={"field": "code"}) from None
        await self._invalidations.publish(PLANS_KEY)
        return plan_of(row)

    async def update(self, *, plan_id: int, changes: dict[str, Any]) -> Plan:
        """``changes`` may hold name, description, active and any of the terms; new terms add a version."""
        async with self._engine.begin() as conn:
            if not await self._plans.lock(conn, plan_id):
                raise NotFound(f"Plan {plan_id} not found", details={"id": plan_id})
            current = await self._plans.current_of(conn, plan_id)
            labels = {k: v for k, v in changes.items() if k in ("name", "description", "active")}
            if labels:
                await self._plans.update(conn, plan_id, **labels)
            terms = {name: changes.get(name, current[name]) for name in TERMS}
            if any(terms[name] != current[name] for name in TERMS):
                await self._plans.add_version(conn, plan_id, terms)
            row = await self._plans.current_of(conn, plan_id)
        await self._invalidations.publish(PLANS_KEY)
        return plan_of(row)
