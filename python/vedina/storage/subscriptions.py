"""Subscription queries: the rows, their transition log and the provider's customer.

Every write happens inside the caller's transaction, after
:meth:`SubscriptionRepository.lock_account` (a no-op UPDATE of the user's row:
a row lock on MariaDB, the write lock on SQLite), so the billing writes of one
account happen one at a time and always take their locks in the same order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.rows import plain
from vedina.storage.schema import (
    LIVE_SUBSCRIPTION_STATUSES,
    billing_customers,
    payments,
    subscription_events,
    subscriptions,
    users,
)


class SubscriptionRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- reads ---------------------------------------------------------------------------

    async def live_of(self, user_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            return await self.live(conn, user_id)

    @staticmethod
    async def live(conn: AsyncConnection, user_id: int) -> dict[str, Any] | None:
        row = (await conn.execute(sa.select(subscriptions).where(subscriptions.c.live_user_id == user_id))).mappings().first()
        return None if row is None else plain(row)

    @staticmethod
    async def get(conn: AsyncConnection, subscription_id: int) -> dict[str, Any] | None:
        row = (await conn.execute(sa.select(subscriptions).where(subscriptions.c.id == subscription_id))).mappings().first()
        return None if row is None else plain(row)

    async def read(self, subscription_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            return await self.get(conn, subscription_id)

    async def of_user(self, user_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
        query = sa.select(subscriptions).where(subscriptions.c.user_id == user_id).order_by(subscriptions.c.id.desc())
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query.limit(limit))).mappings().all()]

    async def events(self, subscription_id: int) -> list[dict[str, Any]]:
        query = (
            sa.select(subscription_events)
            .where(subscription_events.c.subscription_id == subscription_id)
            .order_by(subscription_events.c.id)
        )
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings().all()]

    async def due(self, *, statuses: tuple[str, ...], period_end_before: datetime, limit: int,
                  after: tuple[datetime, int] | None = None) -> list[dict[str, Any]]:
        """Live subscriptions in ``statuses`` whose period (or trial) ended before the given time, in
        (period end, id) order; ``after`` is the last (period end, id) of the previous page."""
        query = (
            sa.select(subscriptions.c.id, subscriptions.c.user_id, subscriptions.c.current_period_end)
            .where(subscriptions.c.status.in_(statuses), subscriptions.c.current_period_end <= period_end_before)
            .order_by(subscriptions.c.current_period_end, subscriptions.c.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(sa.tuple_(subscriptions.c.current_period_end, subscriptions.c.id) > sa.tuple_(*after))
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings().all()]

    async def past_due(self, *, since_before: datetime, limit: int) -> list[dict[str, Any]]:
        query = (
            sa.select(subscriptions.c.id, subscriptions.c.user_id)
            .where(subscriptions.c.status == "past_due", subscriptions.c.past_due_since <= since_before)
            .order_by(subscriptions.c.past_due_since, subscriptions.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings().all()]

    async def incomplete(self, *, created_before: datetime, limit: int, after_id: int = 0) -> list[dict[str, Any]]:
        query = (
            sa.select(subscriptions.c.id, subscriptions.c.user_id)
            .where(subscriptions.c.status == "incomplete", subscriptions.c.created_at <= created_before,
                   subscriptions.c.id > after_id)
            .order_by(subscriptions.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings().all()]

    # -- writes --------------------------------------------------------------------------

    @staticmethod
    async def lock_account(conn: AsyncConnection, user_id: int) -> bool:
        result = await conn.execute(sa.update(users).where(users.c.id == user_id).values(updated_at=users.c.updated_at))
        return result.rowcount > 0

    @staticmethod
    async def account_active(conn: AsyncConnection, user_id: int) -> bool:
        """Whether the account may still be charged (not deleted)."""
        status = (await conn.execute(sa.select(users.c.status).where(users.c.id == user_id))).scalar_one_or_none()
        return status is not None and status != "deleted"

    @staticmethod
    async def insert(conn: AsyncConnection, **values: Any) -> int:
        now = utcnow()
        live = values["status"] in LIVE_SUBSCRIPTION_STATUSES
        result = await conn.execute(sa.insert(subscriptions).values(
            live_user_id=values["user_id"] if live else None, created_at=now, updated_at=now, version=1, **values,
        ))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def update(conn: AsyncConnection, subscription: dict[str, Any], **values: Any) -> None:
        """Change ``subscription`` (its row as read); a new status also sets or clears ``live_user_id``."""
        if "status" in values:
            values["live_user_id"] = (
                subscription["user_id"] if values["status"] in LIVE_SUBSCRIPTION_STATUSES else None
            )
        await conn.execute(
            sa.update(subscriptions)
            .where(subscriptions.c.id == subscription["id"])
            .values(updated_at=utcnow(), version=subscriptions.c.version + 1, **values)
        )

    @staticmethod
    async def record(
        conn: AsyncConnection, *, subscription_id: int, event: str, from_status: str | None, to_status: str,
        detail: dict[str, Any] | None = None, actor_id: int | None = None,
    ) -> int:
        result = await conn.execute(sa.insert(subscription_events).values(
            subscription_id=subscription_id, event=event, from_status=from_status, to_status=to_status,
            detail=detail or {}, actor_id=actor_id, created_at=utcnow(),
        ))
        return int(result.inserted_primary_key[0])

    async def event(self, event_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(subscription_events).where(subscription_events.c.id == event_id))).mappings().first()
        return None if row is None else plain(row)

    @staticmethod
    async def latest_payment(conn: AsyncConnection, subscription_id: int,
                             purpose: str | None = None) -> dict[str, Any] | None:
        """The subscription's newest payment (of ``purpose``, or of any)."""
        query = sa.select(payments).where(payments.c.subscription_id == subscription_id)
        if purpose is not None:
            query = query.where(payments.c.purpose == purpose)
        query = query.order_by(payments.c.id.desc()).limit(1)
        row = (await conn.execute(query)).mappings().first()
        return None if row is None else plain(row)

    # -- the provider's customer ---------------------------------------------------------

    @staticmethod
    async def customer(conn: AsyncConnection, user_id: int) -> dict[str, Any] | None:
        row = (await conn.execute(sa.select(billing_customers).where(billing_customers.c.user_id == user_id))).mappings().first()
        return None if row is None else plain(row)

    async def customer_of(self, user_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            return await self.customer(conn, user_id)

    @staticmethod
    async def save_customer(conn: AsyncConnection, *, user_id: int, provider: str, customer_id: str,
                            payment_method: str | None) -> None:
        now = utcnow()
        updated = await conn.execute(
            sa.update(billing_customers).where(billing_customers.c.user_id == user_id)
            .values(provider=provider, customer_id=customer_id, payment_method=payment_method, updated_at=now)
        )
        if updated.rowcount == 0:
            await conn.execute(sa.insert(billing_customers).values(
                user_id=user_id, provider=provider, customer_id=customer_id, payment_method=payment_method,
                trial_used=False, created_at=now, updated_at=now,
            ))

    @staticmethod
    async def use_trial(conn: AsyncConnection, user_id: int) -> None:
        await conn.execute(sa.update(billing_customers).where(billing_customers.c.user_id == user_id)
                           .values(trial_used=True, updated_at=utcnow()))
