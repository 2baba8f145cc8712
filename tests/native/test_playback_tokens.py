"""vedina._native PlaybackSigner and its wrapper: round trip, tampering, keys, expiry, shape."""

import base64
import hashlib
import hmac

import pytest

from vedina._native import MalformedSignature, PlaybackSigner, SignatureExpired, SignatureMismatch
from vedina.errors import Refused
from vedina.security.keys import derive_key
from vedina.security.playback_tokens import PlaybackTokens

KEY = b"0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000


def test_token_is_the_documented_hmac_of_its_claims():
    token = PlaybackSigner(KEY).sign(user_id=7, asset_id=42, expires_at=NOW + 300, session_id="s1")
    claims, _, sig = token.rpartition(".")
    assert claims == f"{NOW + 300}.7.42.s1"
    expected = hmac.new(KEY, b"vedina-playback-v1\n" + claims.encode(), hashlib.sha256).digest()
    assert sig == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()


def test_round_trip_with_and_without_session():
    signer = PlaybackSigner(KEY)
    grant = signer.verify(signer.sign(user_id=7, asset_id=42, expires_at=NOW + 1, session_id="s1"), asset_id=42, now=NOW)
    assert (grant.user_id, grant.asset_id, grant.expires_at, grant.session_id) == (7, 42, NOW + 1, "s1")
    assert signer.verify(signer.sign(user_id=7, asset_id=42, expires_at=NOW + 1), asset_id=42, now=NOW).session_id is None


@pytest.mark.parametrize("field", [0, 1, 2, 3])
def test_tampering_any_claim_is_a_mismatch(field):
    signer = PlaybackSigner(KEY)
    parts = signer.sign(user_id=7, asset_id=42, expires_at=NOW + 300, session_id="s1").split(".")
    parts[field] = {0: str(NOW + 9999), 1: "8", 2: "43", 3: "s2"}[field]
    with pytest.raises(SignatureMismatch):
        signer.verify(".".join(parts), asset_id=int(parts[2]), now=NOW)


def test_other_asset_and_wrong_key_are_mismatches():
    token = PlaybackSigner(KEY).sign(user_id=7, asset_id=42, expires_at=NOW + 300)
    with pytest.raises(SignatureMismatch):
        PlaybackSigner(KEY).verify(token, asset_id=43, now=NOW)
    with pytest.raises(SignatureMismatch):
        PlaybackSigner(b"x" * 32).verify(token, asset_id=42, now=NOW)


def test_expired_from_the_expiry_second_on():
    signer = PlaybackSigner(KEY)
    token = signer.sign(user_id=7, asset_id=42, expires_at=NOW)
    assert signer.verify(token, asset_id=42, now=NOW - 1).user_id == 7
    with pytest.raises(SignatureExpired):
        signer.verify(token, asset_id=42, now=NOW)


@pytest.mark.parametrize("token", ["", "abc", "1.2.3.4", "1.2.3.4.5", "x" * 300, f"{NOW}.07.42..{'A' * 43}",
                                   f"{NOW}.7.42.a b.{'A' * 43}", f"{NOW}.7.42..{'A' * 42}"])
def test_malformed_tokens(token):
    with pytest.raises(MalformedSignature):
        PlaybackSigner(KEY).verify(token, asset_id=42, now=NOW)


def test_bad_keys_and_claims_are_value_errors():
    with pytest.raises(ValueError):
        PlaybackSigner(b"short")
    with pytest.raises(ValueError):
        PlaybackSigner(KEY).sign(user_id=0, asset_id=1, expires_at=NOW)
    with pytest.raises(ValueError):
        PlaybackSigner(KEY).sign(user_id=1, asset_id=1, expires_at=NOW, session_id="a.b")


def test_wrapper_issues_with_ttl_and_refuses_with_stable_codes():
    tokens = PlaybackTokens(derive_key("s" * 32, "playback"), ttl=300)
    token = tokens.issue(user_id=7, asset_id=42, session_id="s1", now=NOW)
    assert tokens.expires_at(token) == NOW + 300
    assert tokens.verify(token, asset_id=42, now=NOW + 299).session_id == "s1"
    with pytest.raises(Refused) as expired:
        tokens.verify(token, asset_id=42, now=NOW + 300)
    assert (expired.value.status, expired.value.code) == (403, "playback_token_expired")
    with pytest.raises(Refused) as invalid:
        tokens.verify(token, asset_id=43, now=NOW)
    assert invalid.value.to_body()["error"]["code"] == "playback_token_invalid"
