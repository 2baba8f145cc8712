"""Login attempts are limited per account, on both tiers (host table / Redis), whatever the IP."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from vedina.composition import build_services
from vedina.errors import TooManyRequests, Unauthorized

PASSWORD = "correct horse battery staple"
BURST = 10  # RATE_LIMIT_LOGIN_ACCOUNT default: 10 at once, then one a minute


@pytest.fixture
async def identity(settings, resources):
    # The budget is what is tested, not the fallback: on a loaded machine a Redis decision may take
    # over the default 100 ms, and the host tier (a budget of its own) would decide instead.
    identity = build_services(msgspec.structs.replace(settings, rate_limit_redis_timeout_ms=5000), resources)
    await identity.accounts.register(email="victim@example.com", password=PASSWORD, display_name="Victim")
    await identity.accounts.register(email="bystander@example.com", password=PASSWORD, display_name="Bystander")
    return identity


async def test_spent_budget_refuses_even_the_right_password(identity):
    for attempt in range(BURST):
        with pytest.raises(Unauthorized):
            await identity.sessions.login(email="victim@example.com", password=f"wrong {attempt}", ip=f"10.0.0.{attempt}")
    with pytest.raises(TooManyRequests) as refused:
        await identity.sessions.login(email="VICTIM@example.com", password=PASSWORD)
    assert 1 <= int(refused.value.headers["retry-after"]) <= 60
    # Other accounts are not affected.
    assert (await identity.sessions.login(email="bystander@example.com", password=PASSWORD)).access_token


async def test_concurrent_guesses_cannot_outrun_the_budget(identity):
    results = await asyncio.gather(
        *(identity.sessions.login(email="victim@example.com", password=f"guess {i}") for i in range(3 * BURST)),
        return_exceptions=True,
    )
    checked = [r for r in results if isinstance(r, Unauthorized)]
    refused = [r for r in results if isinstance(r, TooManyRequests)]
    assert len(checked) == BURST and len(refused) == 2 * BURST


async def test_unknown_emails_are_limited_alike(identity):
    for _ in range(BURST):
        with pytest.raises(Unauthorized):
            await identity.sessions.login(email="nobody@example.com", password="whatever it is")
    with pytest.raises(TooManyRequests):
        await identity.sessions.login(email="nobody@example.com", password="whatever it is")


async def test_refresh_works_when_the_user_state_cache_is_cold(identity, resources):
    pair = await identity.sessions.login(email="bystander@example.com", password=PASSWORD)
    for user_id in (1, 2):  # no cached user state: the refresh reads the user row itself
        await resources.shared.delete(f"auth:user:{user_id}")
    renewed = await asyncio.wait_for(identity.sessions.refresh(refresh_token=pair.refresh_token), timeout=5)
    assert renewed.access_token and renewed.refresh_token != pair.refresh_token


async def test_login_upgrades_a_hash_made_with_weaker_parameters(identity, resources):
    import sqlalchemy as sa
    from argon2 import PasswordHasher

    from vedina.security.passwords import needs_rehash, normalise
    from vedina.storage.schema import users

    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(normalise(PASSWORD))
    async with resources.engine.begin() as conn:
        await conn.execute(sa.update(users).where(users.c.email == "bystander@example.com").values(password_hash=weak))
    assert (await identity.sessions.login(email="bystander@example.com", password=PASSWORD)).access_token
    async with resources.engine.connect() as conn:
        stored = (await conn.execute(sa.select(users.c.password_hash).where(users.c.email == "bystander@example.com"))).scalar_one()
    assert stored != weak and not needs_rehash(stored)
    assert (await identity.sessions.login(email="bystander@example.com", password=PASSWORD)).access_token
