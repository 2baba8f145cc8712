"""Running a repository's read-only queries on its *reader* (ADR 0017).

A reader is the primary engine (no ``DB_REPLICA_HOSTS``) or a
:class:`vedina.storage.replicas.ReplicaReader`. Repositories hand it their
queries as one function of a connection, so a replica that fails while they
run (it stopped, its connection dropped) costs the caller nothing: the replica
reader runs the function again on the primary, which a read allows.

>>> async def fetch(conn):
...     return (await conn.execute(statement)).mappings().all()
>>> rows = await read(self._reader, fetch)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from vedina.storage.replicas import Reader

T = TypeVar("T")


async def read(reader: Reader, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``work(conn)`` on a connection from ``reader`` (on a replica: again on the primary if it fails)."""
    run = getattr(reader, "read", None)
    if run is not None:
        return await run(work)
    async with reader.connect() as conn:
        return await work(conn)
