"""Comment test helpers: services on the test storage profile (a high posting budget unless a
test sets its own), accounts, profiles and movies made directly, and a movable clock."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import pytest
import sqlalchemy as sa

from tests.viewers.conftest import make_movie, make_user, rows
from vedina.composition import build_services
from vedina.storage.clock import utcnow
from vedina.storage.schema import comment_counts, comments

__all__ = ["Clock", "count_rows", "make_movie", "make_user", "rows", "visible_count"]


class Clock:
    """Naive UTC, settable: the services' ``clock``."""

    def __init__(self) -> None:
        self.now: datetime = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
async def services(settings, resources):
    built = build_services(msgspec.structs.replace(settings, rate_limit_comments="100000/1s burst 100000"), resources)
    clock = Clock()
    built.comments.clock = clock
    built.moderation.clock = clock
    built.clock = clock
    yield built
    await built.viewing.close()
    await built.api_keys.usage.close()


async def visible_count(engine, movie_id: int) -> int:
    found = await rows(engine, sa.select(comment_counts.c.visible).where(comment_counts.c.movie_id == movie_id))
    return found[0]["visible"] if found else 0


async def count_rows(engine, movie_id: int | None = None) -> int:
    query = sa.select(sa.func.count().label("n")).select_from(comments)
    if movie_id is not None:
        query = query.where(comments.c.movie_id == movie_id)
    return (await rows(engine, query))[0]["n"]
