"""The shared key-value store on both profiles (SQLite table / Redis)."""

from __future__ import annotations

import asyncio

import pytest

from vedina.storage.keyvalue import SqlStore


async def test_set_get_delete(resources):
    store = resources.shared
    assert await store.get("k1") is None
    await store.set("k1", b"v1")
    assert await store.get("k1") == b"v1"
    await store.set("k1", b"v2")
    assert await store.get("k1") == b"v2"
    assert await store.delete("k1") is True
    assert await store.delete("k1") is False
    assert await store.get("k1") is None


async def test_add_is_set_if_absent(resources):
    store = resources.shared
    assert await store.add("nonce:abc", b"1", ttl=60) is True
    assert await store.add("nonce:abc", b"2", ttl=60) is False
    assert await store.get("nonce:abc") == b"1"


async def test_expired_keys_vanish_and_can_be_added_again(resources):
    store = resources.shared
    await store.set("short", b"x", ttl=0.2)
    assert await store.add("short", b"y", ttl=0.2) is False
    await asyncio.sleep(0.35)
    assert await store.get("short") is None
    assert await store.add("short", b"z", ttl=5) is True
    assert await store.get("short") == b"z"


async def test_concurrent_add_admits_exactly_one(resources):
    results = await asyncio.gather(*(resources.shared.add("race", str(i).encode(), ttl=30) for i in range(20)))
    assert results.count(True) == 1


async def test_keys_with_sql_and_html_are_plain_data(resources):
    nasty = "k'); DROP TABLE kv_entries; --<script>"
    await resources.shared.set(nasty, b"safe")
    assert await resources.shared.get(nasty) == b"safe"
    assert await resources.shared.get("other") is None


@pytest.mark.parametrize("profile", ["embedded"], indirect=True)
async def test_embedded_profile_shares_through_the_database(resources):
    other_process_view = SqlStore(resources.engine)  # what another worker's store reads
    await resources.shared.set("session:1", b"alive", ttl=60)
    assert await other_process_view.get("session:1") == b"alive"
    await resources.shared.set("gone", b"x", ttl=0.05)
    await asyncio.sleep(0.1)
    assert await other_process_view.sweep() >= 1


@pytest.mark.parametrize("profile", ["embedded"], indirect=True)
async def test_the_scheduled_sweep_deletes_expired_rows(resources):
    import sqlalchemy as sa

    from vedina.composition import build_services
    from vedina.jobs.scheduler import Scheduler
    from vedina.storage.schema import kv_entries

    await resources.shared.set("nonce:old", b"x", ttl=0.05)
    await resources.shared.set("nonce:live", b"y", ttl=60)
    await asyncio.sleep(0.1)
    tasks = build_services(resources.settings, resources).periodic_tasks()
    assert "kv_entries.sweep" in await Scheduler(resources.engine, tasks).run_once()
    async with resources.engine.connect() as conn:
        keys = (await conn.execute(sa.select(kv_entries.c.key))).scalars().all()
    assert keys == ["nonce:live"]
