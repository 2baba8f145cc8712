"""The security primitives on their own: passwords, the secret box, CSRF tokens, key settings."""

from __future__ import annotations

import base64
import time
import uuid

import pytest

from vedina.config import ConfigError, load_settings
from vedina.errors import ValidationFailed
from vedina.security.csrf import CsrfTokens
from vedina.security.jwt_keys import build_token_keys
from vedina.security.passwords import check_policy, hash_password, verify_password
from vedina.security.secretbox import SecretBox, SecretBoxError


@pytest.mark.parametrize("password", ["short", "Password1234", "qwertyuiop", "ada.lovelace-rocks!"])
def test_password_policy_refuses(password):
    with pytest.raises(ValidationFailed) as caught:
        check_policy(password, email="ada.lovelace@example.org")
    assert caught.value.details == {"field": "password"}


def test_password_hash_is_argon2id_and_verifies_only_the_password():
    stored = hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery staple")
    assert not verify_password(stored, "correct horse battery stapler")
    assert not verify_password(None, "correct horse battery staple")


def test_secret_box_binds_ciphertext_to_its_key_id():
    box = SecretBox(bytes(range(32)))
    blob = box.encrypt(b"s3cr3t", aad=b"VDK1")
    assert box.decrypt(blob, aad=b"VDK1") == b"s3cr3t"
    with pytest.raises(SecretBoxError):
        box.decrypt(blob, aad=b"VDK2")
    with pytest.raises(SecretBoxError):
        SecretBox(bytes(32)).decrypt(blob, aad=b"VDK1")


def test_csrf_token_is_per_session():
    csrf = CsrfTokens(b"k" * 32)
    assert csrf.matches("a" * 32, csrf.token_for("a" * 32))
    assert not csrf.matches("b" * 32, csrf.token_for("a" * 32))
    assert not csrf.matches("a" * 32, None) and not csrf.matches("a" * 32, "é")


def test_production_requires_an_api_key_encryption_key():
    env = {"VEDINA_ENV": "production", "SESSION_SECRET": "s" * 40, "PAYMENT_PROVIDER": "stripe",
           "STRIPE_API_KEY": "sk_live_" + "a1B2" * 6, "WEBHOOK_SECRETS": "stripe:whsec_" + "c3D4" * 8}
    with pytest.raises(ConfigError, match="API_KEY_ENCRYPTION_KEY"):
        load_settings(env)
    load_settings({**env, "API_KEY_ENCRYPTION_KEY": base64.b64encode(bytes(32)).decode()})
    with pytest.raises(ConfigError, match="32 bytes"):
        load_settings({**env, "API_KEY_ENCRYPTION_KEY": base64.b64encode(bytes(16)).decode()})


def test_jwt_key_rotation_old_key_still_verifies():
    old = base64.urlsafe_b64encode(b"o" * 32).decode()
    new = base64.urlsafe_b64encode(b"n" * 32).decode()
    before = build_token_keys(load_settings({"JWT_SIGNING_KEYS": f"k1:{old}"}))
    token = before.sign({"sub": "1"}, ttl=60)
    after = build_token_keys(load_settings({"JWT_SIGNING_KEYS": f"k2:{new},k1:{old}"}))
    assert after.signing_kid == "k2" and after.verifier.verify(token)["sub"] == "1"
    with pytest.raises(ConfigError):
        load_settings({"JWT_SIGNING_KEYS": "k1:c2hvcnQ"})


# -- tokens signed with the server's own key but not issued by it (issue 8, item 7) -------------


def _forge(server, **claims) -> str:
    """A token signed with the live server's key (as someone holding the key could make)."""
    from vedina.security.jwt_keys import AUDIENCE, ISSUER, build_token_keys

    keys = build_token_keys(server.settings)
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, "typ": "access", "jti": uuid.uuid4().hex,
            **claims}
    return keys.keyset.encode(body, kid=keys.signing_kid)


def test_tokens_the_server_would_never_issue_are_refused_not_500(server):
    from tests.identity.conftest import bearer

    with server.client() as http:
        victim = server.login(http, server.register(http)).json()
        attacker = server.login(http, server.register(http)).json()
        victim_id = http.get("/api/users/me", headers=bearer(victim["access_token"])).json()["id"]
        own = _forge(server, sub=str(victim_id), sid=victim["session_id"])
        assert http.get("/api/users/me", headers=bearer(own)).status_code == 200  # the forge is faithful
        cases = {
            "superscript digit": _forge(server, sub="\u00b2", sid=victim["session_id"]),
            "float exp 1e300": _forge(server, sub=str(victim_id), sid=victim["session_id"], exp=1e300),
            "exp a year away": _forge(server, sub=str(victim_id), sid=victim["session_id"],
                                      exp=int(time.time()) + 365 * 86400),
            "another user's session": _forge(server, sub=str(victim_id), sid=attacker["session_id"]),
        }
        for name, token in cases.items():
            answer = http.get("/api/users/me", headers=bearer(token))
            assert answer.status_code == 401, (name, answer.status_code, answer.text)
            assert answer.json()["error"]["code"] == "unauthorized"
