"""Plan queries: a plan row and its versions (SQLAlchemy Core, bound parameters only).

A plan's *current* terms are its highest version; a subscription points at the
version it bought, so a new version (a price change) never rewrites it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.rows import plain
from vedina.storage.schema import plan_versions, plans

TERMS = ("price_minor", "currency", "billing_period", "screens", "max_height", "trial_days")

_VERSION_COLUMNS = (
    plan_versions.c.id.label("version_id"), plan_versions.c.version, *(plan_versions.c[name] for name in TERMS),
    plans.c.id.label("plan_id"), plans.c.code, plans.c.name, plans.c.tier, plans.c.description, plans.c.active,
)
_latest = (
    sa.select(sa.func.max(plan_versions.c.version))
    .where(plan_versions.c.plan_id == plans.c.id)
    .correlate(plans)
    .scalar_subquery()
)
_CURRENT = (
    sa.select(*_VERSION_COLUMNS)
    .select_from(plans.join(plan_versions, plan_versions.c.plan_id == plans.c.id))
    .where(plan_versions.c.version == _latest)
)


class PlanRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def current(self, *, active_only: bool) -> list[dict[str, Any]]:
        """Every plan with its current terms, cheapest tier first."""
        query = _CURRENT.order_by(plan_versions.c.price_minor, plans.c.id)
        if active_only:
            query = query.where(plans.c.active.is_(True))
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings().all()]

    async def get(self, plan_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            return await self.current_of(conn, plan_id)

    @staticmethod
    async def current_of(conn: AsyncConnection, plan_id: int) -> dict[str, Any] | None:
        row = (await conn.execute(_CURRENT.where(plans.c.id == plan_id))).mappings().first()
        return None if row is None else plain(row)

    @staticmethod
    async def version(conn: AsyncConnection, version_id: int) -> dict[str, Any] | None:
        query = (
            sa.select(*_VERSION_COLUMNS)
            .select_from(plans.join(plan_versions, plan_versions.c.plan_id == plans.c.id))
            .where(plan_versions.c.id == version_id)
        )
        row = (await conn.execute(query)).mappings().first()
        return None if row is None else plain(row)

    async def version_of(self, version_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            return await self.version(conn, version_id)

    @staticmethod
    async def insert(conn: AsyncConnection, *, code: str, name: str, tier: str, description: str, active: bool) -> int:
        now = utcnow()
        result = await conn.execute(sa.insert(plans).values(
            code=code, name=name, tier=tier, description=description, active=active, created_at=now, updated_at=now,
        ))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def lock(conn: AsyncConnection, plan_id: int) -> bool:
        """Lock the plan row (a no-op UPDATE), so two price changes number their versions in turn."""
        result = await conn.execute(sa.update(plans).where(plans.c.id == plan_id).values(updated_at=utcnow()))
        return result.rowcount > 0

    @staticmethod
    async def update(conn: AsyncConnection, plan_id: int, **values: Any) -> None:
        await conn.execute(sa.update(plans).where(plans.c.id == plan_id).values(updated_at=utcnow(), **values))

    @staticmethod
    async def add_version(conn: AsyncConnection, plan_id: int, terms: dict[str, Any]) -> int:
        latest = (await conn.execute(
            sa.select(sa.func.max(plan_versions.c.version)).where(plan_versions.c.plan_id == plan_id)
        )).scalar_one()
        result = await conn.execute(sa.insert(plan_versions).values(
            plan_id=plan_id, version=(latest or 0) + 1, created_at=utcnow(), **{name: terms[name] for name in TERMS},
        ))
        return int(result.inserted_primary_key[0])
