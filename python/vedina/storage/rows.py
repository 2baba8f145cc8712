"""Turning SQLAlchemy result rows into plain dicts."""

from __future__ import annotations

from typing import Any


def plain(row: Any) -> dict[str, Any]:
    """A ``RowMapping`` as a dict with plain ``str`` keys.

    SQLAlchemy's keys are ``quoted_name`` objects, which msgspec (and other
    strict consumers) refuse as dict keys.
    """
    return {str(key): value for key, value in row.items()}


async def all_rows(conn: Any, statement: Any) -> list[dict[str, Any]]:
    """Every row of ``statement`` on ``conn``, as plain dicts."""
    return [plain(row) for row in (await conn.execute(statement)).mappings().all()]
