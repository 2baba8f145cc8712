"""Viewer test helpers: services built on the test storage profile, accounts and movies made directly."""

from __future__ import annotations

import uuid

import msgspec
import pytest
import sqlalchemy as sa

from vedina.composition import build_services
from vedina.storage.clock import utcnow
from vedina.storage.schema import movies, users


@pytest.fixture
async def services(settings, resources):
    built = build_services(msgspec.structs.replace(settings, progress_flush_seconds=30), resources)
    yield built
    await built.viewing.close()
    await built.api_keys.usage.close()


async def make_user(engine, name: str = "Viewer") -> int:
    now = utcnow()
    async with engine.begin() as conn:
        result = await conn.execute(sa.insert(users).values(
            email=f"v-{uuid.uuid4().hex[:12]}@example.org", display_name=name, role="viewer", status="active",
            created_at=now, updated_at=now,
        ))
    return int(result.inserted_primary_key[0])


async def make_movie(engine, *, rating: str = "G", status: str = "published", title: str | None = None) -> int:
    now = utcnow()
    title = title or f"Movie {uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        result = await conn.execute(sa.insert(movies).values(
            slug=title.lower().replace(" ", "-"), title=title, sort_title=title.lower(), maturity_rating=rating,
            genres=[], spoken_languages=[], subtitle_languages=[], status=status,
            published_at=now if status == "published" else None, created_at=now, updated_at=now,
        ))
    return int(result.inserted_primary_key[0])


async def rows(engine, statement) -> list[dict]:
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(statement)).mappings().all()]


class StatementCounter:
    """Counts the SQL statements an engine runs that contain ``needle`` (e.g. writes to a table)."""

    def __init__(self, engine, *needles: str) -> None:
        self.statements: list[str] = []
        self._engine = engine.sync_engine
        self._needles = needles

    def __enter__(self) -> StatementCounter:
        sa.event.listen(self._engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if all(needle in statement for needle in self._needles):
            self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)
