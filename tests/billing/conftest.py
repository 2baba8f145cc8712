"""Billing test helpers: in-process services on each profile, talking to the session's
`vedina provider-sim` through the real Stripe SDK; accounts and plans made per test."""

from __future__ import annotations

import time
import uuid

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from tests.conftest import TEST_DB, TEST_REDIS_DB, LiveServer, profile_env, server_pool, signed_in
from tests.playback.conftest import PLAYBACK_ENV, PlaybackServer
from vedina.composition import open_services
from vedina.storage.clock import utcnow
from vedina.storage.schema import movies
from vedina.storage.users import UserRepository

# Amounts in cents; every plan here bills monthly in USD.
PLAN_TERMS = {
    "basic": {"price_minor": 999, "screens": 1, "max_height": 720},
    "standard": {"price_minor": 1499, "screens": 2, "max_height": 1080},
    "premium": {"price_minor": 1999, "screens": 4, "max_height": 2160},
}


class Clock:
    """A settable clock (seconds), for the services' ``clock``."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, *, days: float = 0, seconds: float = 0) -> None:
        self.now += days * 86400 + seconds


@pytest.fixture
async def billing(settings, provider_sim):
    """Services on ``settings`` (no background tasks), a fresh simulator behaviour, a movable clock."""
    provider_sim.control.reset()
    services = await open_services(msgspec.structs.replace(settings, playback_default_plan="none"))
    # The scheduled work reads every subscription of the database, and moving the clock makes all
    # of them due: each test starts with none (the real profile's test database is the session's).
    async with services.resources.engine.begin() as conn:
        for table in ("refunds", "payments", "subscription_events", "subscriptions"):
            await conn.execute(sa.text(f"DELETE FROM {table}"))
    clock = Clock()
    services.subscriptions.clock = clock
    services.playback._plans.clock = clock
    services.idempotency.clock = clock  # Idempotency-Key records are kept 24 h
    services.clock = clock
    yield services
    await services.close()
    provider_sim.control.reset()


async def new_account(services) -> tuple[int, str]:
    email = f"billing-{uuid.uuid4().hex[:12]}@example.org"
    async with services.resources.engine.begin() as conn:
        user_id = await UserRepository.insert(conn, email=email, display_name="Billing <b>Test</b>",
                                              password_hash=None, role="viewer", status="active")
    return user_id, email


async def make_plans(services, *, trial_days: int = 0) -> dict[str, int]:
    """basic / standard / premium plans (unique codes per call); name -> plan id."""
    suffix = uuid.uuid4().hex[:8]
    made = {}
    for tier, terms in PLAN_TERMS.items():
        plan = await services.plans.create(
            code=f"{tier}-{suffix}", name=f"{tier.title()} {suffix}", tier=tier, description="", active=True,
            terms={**terms, "currency": "usd", "billing_period": "month", "trial_days": trial_days},
        )
        made[tier] = plan.id
    return made


async def published_movie(services, *, plan_tier: str) -> int:
    now = utcnow()
    async with services.resources.engine.begin() as conn:
        result = await conn.execute(sa.insert(movies).values(
            slug=f"billing-{uuid.uuid4().hex[:10]}", title="Billing test", original_title="", sort_title="billing test",
            synopsis="", maturity_rating="G", genres=[], spoken_languages=[], subtitle_languages=[],
            plan_tier=plan_tier, status="published", published_at=now, version=1, people_text="", popularity=0,
            rating_count=0, rating_sum=0, rating_avg=0, created_at=now, updated_at=now,
        ))
    return result.inserted_primary_key[0]


async def run_scheduled(services, name: str) -> None:
    """Run the registered periodic task ``name`` as the scheduler does at a tick it claimed (at the
    services' moved time): the task, not the service method it wraps."""
    task = next(t for t in services.periodic_tasks() if t.name == name)
    await task.run(services.subscriptions.now())


# -- live servers ------------------------------------------------------------------


@pytest.fixture
def billing_site(billing, profile, tmp_path):
    """A Granian server on the ``billing`` services' database and host (PLAYBACK_DEFAULT_PLAN=none):
    the scheduled tasks run in-process at the moved clock, what they write reaches the server's
    workers by invalidation, and playback is asked over HTTP (at the real time)."""
    env = profile_env(profile, tmp_path, database=TEST_DB, redis_db=TEST_REDIS_DB,
                      amqp_prefix=billing.settings.amqp_queue_prefix)
    assert env["DATA_DIR"] == str(billing.settings.data_dir)  # one embedded database, one invalidation file
    site = PlaybackServer(LiveServer(server="granian", env={**env, **PLAYBACK_ENV, "PLAYBACK_DEFAULT_PLAN": "none"}))
    yield site
    site.live.stop()



@pytest.fixture(scope="session")
def billing_servers(live_data):
    """Per profile, a Granian server on the live data where accounts without a subscription may
    stream nothing (PLAYBACK_DEFAULT_PLAN=none); on the real profile the session's `vedina worker`
    runs its jobs (webhook processing included)."""
    with server_pool(lambda profile: PlaybackServer(LiveServer(
        server="granian", env={**live_data(profile), **PLAYBACK_ENV, "PLAYBACK_DEFAULT_PLAN": "none"},
    ))) as get:
        yield get


_admins: dict[str, httpx.Client] = {}


def admin(site) -> httpx.Client:
    """An admin's client on the site (made once per server)."""
    if site.base_url not in _admins:
        _admins[site.base_url] = signed_in(site.base_url, site.env, role="admin")
    return _admins[site.base_url]


def new_plan(site, tier: str = "premium", **overrides) -> dict:
    body = {"code": f"{tier}-{uuid.uuid4().hex[:8]}", "name": f"{tier.title()} monthly", "tier": tier,
            "currency": "usd", "billing_period": "month", **PLAN_TERMS[tier], **overrides}
    created = admin(site).post("/api/plans", json=body)
    assert created.status_code == 201, created.text
    return created.json()


def key() -> dict[str, str]:
    """A fresh Idempotency-Key header."""
    return {"idempotency-key": str(uuid.uuid4())}

