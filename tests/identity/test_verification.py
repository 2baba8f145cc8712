"""With REQUIRE_VERIFIED_EMAIL (the default), an account logs in only once its email is verified,
so registering an address and logging in with the password one chose tells nothing about
whether the address already had an account (issue 8, item 7; found by the session's review)."""

from __future__ import annotations

import pytest

from tests.conftest import PROFILES, LiveServer, require_profile
from tests.identity.conftest import PASSWORD, IdentityServer


@pytest.fixture(scope="module", params=PROFILES)
def strict(request, live_data):
    require_profile(request.param)
    env = {**live_data(request.param), "RATE_LIMIT_ENABLED": "false", "REQUIRE_VERIFIED_EMAIL": "true"}
    server = IdentityServer(LiveServer(server="granian", env=env, workers=2))
    yield server
    server.live.stop()


def test_register_then_login_cannot_tell_a_taken_address_from_a_new_one(strict):
    with strict.client() as http:
        owner = strict.register(http)
        strict.verify(http, owner)
        assert strict.login(http, owner).status_code == 200
        attacker_password = "a different horse battery"
        answers = {}
        for name, address in (("taken", owner), ("new", f"fresh-{owner}")):
            registered = http.post("/api/auth/register",
                                   json={"email": address, "password": attacker_password, "display_name": "Probe"})
            login = strict.login(http, address, password=attacker_password)
            answers[name] = (registered.status_code, login.status_code, login.json())
    assert answers["taken"] == answers["new"]
    assert answers["new"][:2] == (202, 401)


def test_verifying_opens_the_account_and_a_lost_email_can_be_asked_for_again(strict):
    with strict.client() as http:
        address = strict.register(http)
        assert strict.login(http, address).status_code == 401
        asked = http.post("/api/auth/verify-email/request", json={"email": address})
        unknown = http.post("/api/auth/verify-email/request", json={"email": f"nobody-{address}"})
        assert asked.status_code == unknown.status_code == 202 and asked.json() == unknown.json()
        strict.verify(http, address)
        assert strict.login(http, address, password=PASSWORD).status_code == 200
