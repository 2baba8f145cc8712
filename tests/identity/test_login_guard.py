"""Failed logins are limited per account, on both tiers (host table / Redis), whatever the IP."""

from __future__ import annotations

import pytest

from vedina.errors import TooManyRequests, Unauthorized
from vedina.services.identity import IdentityServices

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def sessions(settings, resources):
    identity = IdentityServices.build(settings, resources)
    await identity.accounts.register(email="victim@example.com", password=PASSWORD, display_name="Victim")
    await identity.accounts.register(email="bystander@example.com", password=PASSWORD, display_name="Bystander")
    return identity.sessions


async def test_five_failures_lock_the_account_even_for_the_right_password(sessions):
    for attempt in range(5):
        with pytest.raises(Unauthorized):
            await sessions.login(email="victim@example.com", password=f"wrong guess {attempt}", ip=f"10.0.0.{attempt}")
    with pytest.raises(TooManyRequests) as refused:
        await sessions.login(email="VICTIM@example.com", password=PASSWORD)
    assert 1 <= int(refused.value.headers["retry-after"]) <= 180
    # Other accounts are not affected.
    pair = await sessions.login(email="bystander@example.com", password=PASSWORD)
    assert pair.access_token


async def test_successful_logins_cost_nothing(sessions):
    for _ in range(8):
        assert (await sessions.login(email="victim@example.com", password=PASSWORD)).access_token


async def test_unknown_emails_are_limited_alike(sessions):
    for _ in range(5):
        with pytest.raises(Unauthorized):
            await sessions.login(email="nobody@example.com", password="whatever it is")
    with pytest.raises(TooManyRequests):
        await sessions.login(email="nobody@example.com", password="whatever it is")
