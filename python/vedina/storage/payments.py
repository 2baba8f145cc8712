"""Payment and refund queries (SQLAlchemy Core, bound parameters only).

A payment's status only moves forward: ``pending -> processing -> succeeded``,
``pending|processing -> failed`` and ``failed -> succeeded`` (the customer paid
on a second try of the same intent); :meth:`PaymentRepository.settle` is a
compare-and-set on the status, so a duplicate or late provider event changes
nothing and exactly one caller applies a settlement's effects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.rows import plain
from vedina.storage.schema import payments, refunds

# Which statuses each status may be reached from.
FROM_STATUSES = {
    "processing": ("pending",),
    "succeeded": ("pending", "processing", "failed"),
    "failed": ("pending", "processing"),
}


class DuplicateCharge(Exception):
    """A payment with this charge key exists: what it pays for is being (or was) charged."""


class PaymentRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def read(self, payment_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            return await self.get(conn, payment_id)

    @staticmethod
    async def get(conn: AsyncConnection, payment_id: int) -> dict[str, Any] | None:
        row = (await conn.execute(sa.select(payments).where(payments.c.id == payment_id))).mappings().first()
        return None if row is None else plain(row)

    async def by_intent(self, intent_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(payments).where(payments.c.intent_id == intent_id))).mappings().first()
        return None if row is None else plain(row)

    async def of_user(self, user_id: int, *, before_id: int | None, limit: int) -> list[dict[str, Any]]:
        query = sa.select(payments).where(payments.c.user_id == user_id)
        if before_id is not None:
            query = query.where(payments.c.id < before_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(payments.c.id.desc()).limit(limit))).mappings().all()
        return [plain(r) for r in rows]

    async def unsettled(self, *, updated_before: datetime, limit: int) -> list[dict[str, Any]]:
        """Payments still pending or processing since before the given time (for reconciliation)."""
        query = (
            sa.select(payments)
            .where(payments.c.status.in_(("pending", "processing")), payments.c.updated_at <= updated_before)
            .order_by(payments.c.updated_at, payments.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings().all()]

    @staticmethod
    async def insert(conn: AsyncConnection, **values: Any) -> int:
        """Raises :class:`DuplicateCharge` when the charge key exists."""
        now = utcnow()
        try:
            async with conn.begin_nested():
                result = await conn.execute(sa.insert(payments).values(
                    status="pending", refunded_minor=0, refunding_minor=0, created_at=now, updated_at=now, **values,
                ))
        except IntegrityError:
            raise DuplicateCharge(values["charge_key"]) from None
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def attach_intent(conn: AsyncConnection, payment_id: int, intent_id: str) -> None:
        await conn.execute(
            sa.update(payments).where(payments.c.id == payment_id, payments.c.intent_id.is_(None))
            .values(intent_id=intent_id, updated_at=utcnow())
        )

    @staticmethod
    async def touch(conn: AsyncConnection, payment_id: int) -> None:
        """Mark the payment as looked at now (reconciliation asks again after a while)."""
        await conn.execute(sa.update(payments).where(payments.c.id == payment_id).values(updated_at=utcnow()))

    @staticmethod
    async def settle(
        conn: AsyncConnection, payment_id: int, status: str, *, failure_code: str | None = None,
        failure_message: str | None = None,
    ) -> bool:
        """Move the payment to ``status`` if it may go there from where it is; True when it moved."""
        now = utcnow()
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if status == "succeeded":
            values.update(succeeded_at=now, failure_code=None, failure_message=None)
        elif status == "failed":
            values.update(failure_code=(failure_code or "payment_failed")[:64],
                          failure_message=(failure_message or "")[:255] or None)
        result = await conn.execute(
            sa.update(payments)
            .where(payments.c.id == payment_id, payments.c.status.in_(FROM_STATUSES[status]))
            .values(**values)
        )
        return result.rowcount == 1

    # -- refunds -------------------------------------------------------------------------

    @staticmethod
    async def reserve_refund(conn: AsyncConnection, payment: dict[str, Any], *, amount: int, reason: str,
                             actor_id: int | None, provider_key: str) -> int | None:
        """Reserve ``amount`` of a succeeded payment for a refund; None when it would exceed
        what is left (paid - refunded - in flight). A compare-and-set, so concurrent refunds
        can never add up to more than was paid."""
        reserved = await conn.execute(
            sa.update(payments)
            .where(
                payments.c.id == payment["id"], payments.c.status == "succeeded",
                payments.c.amount_minor - payments.c.refunded_minor - payments.c.refunding_minor >= amount,
            )
            .values(refunding_minor=payments.c.refunding_minor + amount, updated_at=utcnow())
        )
        if reserved.rowcount != 1:
            return None
        now = utcnow()
        result = await conn.execute(sa.insert(refunds).values(
            payment_id=payment["id"], amount_minor=amount, currency=payment["currency"], status="pending",
            reason=reason[:255], actor_id=actor_id, provider_key=provider_key, created_at=now, updated_at=now,
        ))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def finish_refund(conn: AsyncConnection, refund_id: int, *, succeeded: bool,
                            provider_refund_id: str | None) -> dict[str, Any] | None:
        """Settle a pending refund once: the reservation becomes refunded, or is released."""
        refund = (await conn.execute(sa.select(refunds).where(refunds.c.id == refund_id))).mappings().first()
        if refund is None or refund["status"] != "pending":
            return None
        amount = refund["amount_minor"]
        finished = await conn.execute(
            sa.update(refunds).where(refunds.c.id == refund_id, refunds.c.status == "pending")
            .values(status="succeeded" if succeeded else "failed",
                    provider_refund_id=provider_refund_id or refund["provider_refund_id"], updated_at=utcnow())
        )
        if finished.rowcount != 1:  # finished by someone else meanwhile: the payment is theirs to adjust
            return None
        moved = {"refunding_minor": payments.c.refunding_minor - amount, "updated_at": utcnow()}
        if succeeded:
            moved["refunded_minor"] = payments.c.refunded_minor + amount
        await conn.execute(sa.update(payments).where(payments.c.id == refund["payment_id"]).values(**moved))
        return plain(refund)

    async def refund(self, refund_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(refunds).where(refunds.c.id == refund_id))).mappings().first()
        return None if row is None else plain(row)

    @staticmethod
    async def note_provider_refund(conn: AsyncConnection, refund_id: int, provider_refund_id: str) -> None:
        """The provider's id of a refund it has not finished yet (later asked about by id, never re-created)."""
        await conn.execute(
            sa.update(refunds).where(refunds.c.id == refund_id, refunds.c.provider_refund_id.is_(None))
            .values(provider_refund_id=provider_refund_id, updated_at=utcnow())
        )

    async def refunds_of(self, payment_id: int) -> list[dict[str, Any]]:
        query = sa.select(refunds).where(refunds.c.payment_id == payment_id).order_by(refunds.c.id)
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings().all()]

    async def pending_refunds(self, *, updated_before: datetime, limit: int) -> list[dict[str, Any]]:
        query = (
            sa.select(refunds).where(refunds.c.status == "pending", refunds.c.updated_at <= updated_before)
            .order_by(refunds.c.id).limit(limit)
        )
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings().all()]
