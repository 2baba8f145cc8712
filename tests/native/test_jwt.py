"""vedina._native JWT: interop with PyJWT (the reference), forgeries, claims, cache.

Keys are generated here with `cryptography`; nothing is read from disk.
"""

import base64
import copy
import hashlib
import hmac
import json
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from vedina import _native
from vedina._native import (
    ExpiredToken,
    ImmatureToken,
    InvalidClaims,
    InvalidKey,
    InvalidSignature,
    JWTError,
    JwtKeySet,
    JwtVerifier,
    MalformedToken,
)

ISS = "https://auth.vedina.example"
AUD = "vedina-api"
NOW = 1_800_000_000.0
ALGS = ["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def pem_private(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_public(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def material():
    """Per algorithm: (PyJWT signing key, PyJWT verifying key, how Rust loads it)."""
    secrets = {"HS256": b"s" * 32, "HS384": b"t" * 48, "HS512": b"u" * 64}
    out = {alg: (s, s, ("hmac", s)) for alg, s in secrets.items()}
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    for alg, key in (("RS256", rsa_key), ("ES256", ec_key), ("EdDSA", ed_key)):
        out[alg] = (key, key.public_key(), ("pem", pem_private(key), pem_public(key)))
    return out


def keyset_for(material, alg, *, private: bool, kid: str | None = None) -> JwtKeySet:
    kid = kid or alg.lower()
    ks = JwtKeySet()
    spec = material[alg][2]
    if spec[0] == "hmac":
        ks.add_hmac_key(kid, alg, spec[1])
    elif private:
        ks.add_private_key_pem(kid, alg, spec[1])
    else:
        ks.add_public_key_pem(kid, alg, spec[2])
    return ks


def claims(**extra):
    base = {"sub": "user-1", "iss": ISS, "aud": AUD, "iat": NOW - 10, "exp": NOW + 600, "jti": "j1"}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def verifier(ks, **kw) -> JwtVerifier:
    kw.setdefault("issuer", ISS)
    kw.setdefault("audience", AUD)
    return JwtVerifier(ks, **kw)


@pytest.fixture()
def hs():
    ks = JwtKeySet()
    ks.add_hmac_key("k1", "HS256", b"k" * 32)
    return ks


# ---- interop with PyJWT, every algorithm -------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_pyjwt_tokens_verify_in_rust(material, alg):
    kid = alg.lower()
    token = pyjwt.encode(claims(scope=["watch", "rate"]), material[alg][0], algorithm=alg, headers={"kid": kid})
    got = verifier(keyset_for(material, alg, private=False)).verify(token, now=NOW)
    assert got == claims(scope=["watch", "rate"])
    assert isinstance(got["exp"], float) and isinstance(got["sub"], str)


@pytest.mark.parametrize("alg", ALGS)
def test_rust_tokens_verify_in_pyjwt(material, alg):
    ks = keyset_for(material, alg, private=True)
    exp = int(time.time()) + 600
    token = ks.encode({"sub": "user-2", "iss": ISS, "aud": AUD, "exp": exp, "n": [1, 2.5, None, True]})
    header = pyjwt.get_unverified_header(token)
    assert header == {"alg": alg, "typ": "JWT", "kid": alg.lower()}
    got = pyjwt.decode(token, material[alg][1], algorithms=[alg], audience=AUD, issuer=ISS)
    assert got == {"sub": "user-2", "iss": ISS, "aud": AUD, "exp": exp, "n": [1, 2.5, None, True]}
    # And the signed token also round-trips through our own verifier.
    assert verifier(ks).verify(token)["sub"] == "user-2"


def test_private_key_set_verifies_pyjwt_tokens(material):
    token = pyjwt.encode(claims(), material["ES256"][0], algorithm="ES256", headers={"kid": "es256"})
    assert verifier(keyset_for(material, "ES256", private=True)).verify(token, now=NOW)["jti"] == "j1"


# ---- forgeries ----------------------------------------------------------------------------


def test_changed_payload_is_invalid_signature(material):
    token = pyjwt.encode(claims(), material["RS256"][0], algorithm="RS256", headers={"kid": "rs256"})
    h, _, s = token.split(".")
    forged = f"{h}.{b64json(claims(sub='admin'))}.{s}"
    with pytest.raises(InvalidSignature):
        verifier(keyset_for(material, "RS256", private=False)).verify(forged, now=NOW)


@pytest.mark.parametrize("header", [{"alg": "none"}, {"alg": "none", "kid": "k1"}, {"alg": "None", "kid": "k1"}])
def test_alg_none_is_rejected(hs, header):
    token = f"{b64json(header)}.{b64json(claims())}."
    with pytest.raises(InvalidKey):
        verifier(hs).verify(token, now=NOW)


@pytest.mark.parametrize("with_kid", [True, False])
def test_hs256_signed_with_rsa_public_pem_is_rejected(material, with_kid):
    public_pem = material["RS256"][2][2]
    header = {"alg": "HS256", "typ": "JWT"} | ({"kid": "rs256"} if with_kid else {})
    signing_input = f"{b64json(header)}.{b64json(claims())}"
    sig = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64(sig)}"
    with pytest.raises(InvalidKey, match="alg"):
        verifier(keyset_for(material, "RS256", private=False)).verify(forged, now=NOW)


def test_public_pem_cannot_be_loaded_as_hmac_key(material):
    ks = JwtKeySet()
    with pytest.raises(ValueError):
        ks.add_public_key_pem("x", "HS256", material["RS256"][2][2])
    with pytest.raises(ValueError):
        ks.add_public_key_pem("x", "ES256", material["RS256"][2][2])
    assert ks.kids() == []


def test_wrong_kid_and_missing_kid_with_several_keys(material, hs):
    hs.add_hmac_key("k2", "HS256", b"m" * 32)
    wrong = pyjwt.encode(claims(), b"k" * 32, algorithm="HS256", headers={"kid": "k9"})
    with pytest.raises(InvalidKey, match="kid"):
        verifier(hs).verify(wrong, now=NOW)
    no_kid = pyjwt.encode(claims(), b"k" * 32, algorithm="HS256")
    with pytest.raises(InvalidKey, match="kid"):
        verifier(hs).verify(no_kid, now=NOW)
    # With a single key, a token without kid is fine.
    assert hs.remove_key("k2")
    assert verifier(hs).verify(no_kid, now=NOW)["sub"] == "user-1"


def test_alg_must_match_the_keys_algorithm(hs):
    token = pyjwt.encode(claims(), b"k" * 64, algorithm="HS512", headers={"kid": "k1"})
    with pytest.raises(InvalidKey):
        verifier(hs).verify(token, now=NOW)


# ---- claims -------------------------------------------------------------------------------


def hs_token(**extra) -> str:
    return pyjwt.encode(claims(**extra), b"k" * 32, algorithm="HS256", headers={"kid": "k1"})


def raw_token(payload: dict, header: dict | None = None) -> str:
    header = header or {"alg": "HS256", "kid": "k1"}
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    return f"{signing_input}.{b64(hmac.new(b'k' * 32, signing_input.encode(), hashlib.sha256).digest())}"


@pytest.mark.parametrize(
    ("token", "exc"),
    [
        (lambda: hs_token(exp=NOW - 1), ExpiredToken),
        (lambda: hs_token(exp=NOW), ExpiredToken),
        (lambda: hs_token(nbf=NOW + 30), ImmatureToken),
        (lambda: hs_token(iat=NOW + 30), ImmatureToken),
        (lambda: raw_token(claims(exp=str(int(NOW + 600)))), InvalidClaims),
        (lambda: raw_token(claims(nbf="0")), InvalidClaims),
        (lambda: raw_token(claims(iat=[1])), InvalidClaims),
        (lambda: raw_token(claims(exp=None)), InvalidClaims),
        (lambda: raw_token(claims(), {"alg": "HS256", "kid": "k1", "crit": ["exp"]}), InvalidClaims),
        (lambda: raw_token(claims(), {"alg": "HS256", "kid": "k1", "crit": []}), InvalidClaims),
        (lambda: hs_token(iss="https://evil.example"), InvalidClaims),
        (lambda: hs_token(iss=None), InvalidClaims),
        (lambda: hs_token(aud="other-api"), InvalidClaims),
        (lambda: hs_token(aud=["other-api", "web"]), InvalidClaims),
        (lambda: hs_token(aud=None), InvalidClaims),
        (lambda: "not-a-token", MalformedToken),
        (lambda: "a.b.c", MalformedToken),
        (lambda: f"{b64(b'{not json')}.{b64json(claims())}.AAAA", MalformedToken),
        (lambda: raw_token([1, 2]), MalformedToken),
        (lambda: hs_token() + ".extra", MalformedToken),
    ],
)
def test_bad_tokens_raise_the_right_exception(hs, token, exc):
    tok = token()
    with pytest.raises(exc) as info:
        verifier(hs).verify(tok, now=NOW)
    # Every rejection is a JWTError (a ValueError), and never echoes the token.
    assert isinstance(info.value, JWTError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert message
    # Segments long enough not to match by chance never appear in the message.
    assert all(part not in message for part in tok.split(".") if len(part) > 8)
    assert "kkkk" not in message


def test_exception_classes_are_distinct_subclasses():
    classes = [ExpiredToken, ImmatureToken, InvalidSignature, InvalidClaims, MalformedToken, InvalidKey]
    assert issubclass(JWTError, ValueError)
    assert all(issubclass(c, JWTError) for c in classes)
    assert len(set(classes)) == len(classes)
    assert not issubclass(ExpiredToken, InvalidClaims)


def test_aud_array_and_no_configured_audience(hs):
    assert verifier(hs).verify(hs_token(aud=["web", AUD]), now=NOW)["aud"] == ["web", AUD]
    no_aud_verifier = JwtVerifier(hs, issuer=ISS)
    with pytest.raises(InvalidClaims, match="aud"):
        no_aud_verifier.verify(hs_token(), now=NOW)
    assert no_aud_verifier.verify(hs_token(aud=None), now=NOW)["sub"] == "user-1"


def test_leeway(hs):
    tok = hs_token(exp=NOW - 5, nbf=NOW + 5)
    with pytest.raises(ExpiredToken):
        verifier(hs, cache_capacity=0).verify(tok, now=NOW)
    assert verifier(hs, leeway=10).verify(tok, now=NOW)["sub"] == "user-1"
    with pytest.raises(ExpiredToken):
        verifier(hs, leeway=10).verify(tok, now=NOW + 5)
    with pytest.raises(ValueError):
        JwtVerifier(hs, leeway=-1)


def test_json_types_convert(hs):
    payload = claims(n=7, big=2**63 + 1, f=1.5, flag=False, nested={"a": [1, 2.0, {"b": "c"}]})
    payload["nothing"] = None  # claims() drops None values, so set it here
    got = verifier(hs).verify(raw_token(payload), now=NOW)
    assert got == payload
    assert type(got["n"]) is int and type(got["big"]) is int and type(got["f"]) is float
    assert type(got["nested"]["a"][1]) is float and got["flag"] is False and got["nothing"] is None


def test_default_now_is_the_system_clock(hs):
    fresh = pyjwt.encode(claims(iat=None, exp=time.time() + 60), b"k" * 32, algorithm="HS256", headers={"kid": "k1"})
    assert verifier(hs).verify(fresh)["sub"] == "user-1"
    with pytest.raises(ExpiredToken):
        verifier(hs).verify(hs_token(iat=None, exp=time.time() - 60))


# ---- verify_jws and the RFC vectors ----------------------------------------------------------

RFC7515_A1_KEY = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
RFC7515_A1_TOKEN = (
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)
RFC8037_A4_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_A4_TOKEN = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
    ".hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


def unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_rfc7515_a1_hs256_vector():
    ks = JwtKeySet()
    ks.add_hmac_key("a1", "HS256", unb64(RFC7515_A1_KEY))
    v = JwtVerifier(ks)
    assert v.verify_jws(RFC7515_A1_TOKEN) == (
        b'{"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}'
    )
    with pytest.raises(ExpiredToken):  # exp is in 2011
        v.verify(RFC7515_A1_TOKEN)
    assert v.verify(RFC7515_A1_TOKEN, now=1300819379)["http://example.com/is_root"] is True


def test_rfc8037_a4_ed25519_vector():
    public = ed25519.Ed25519PublicKey.from_public_bytes(unb64(RFC8037_A4_X))
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    ks = JwtKeySet()
    ks.add_public_key_pem("a4", "EdDSA", pem)
    v = JwtVerifier(ks)
    assert v.verify_jws(RFC8037_A4_TOKEN) == b"Example of Ed25519 signing"
    with pytest.raises(MalformedToken):  # payload is not JSON claims
        v.verify(RFC8037_A4_TOKEN)
    with pytest.raises(InvalidSignature):
        v.verify_jws(RFC8037_A4_TOKEN[:-2] + "AA")


# ---- the cache ------------------------------------------------------------------------------


def test_cache_returns_independent_dicts(hs):
    v = verifier(hs)
    tok = hs_token(roles={"movies": ["watch"]})
    first = v.verify(tok, now=NOW)
    expected = copy.deepcopy(first)
    first["sub"] = "admin"
    first["roles"]["movies"].append("delete")
    assert v.cache_size == 1
    second = v.verify(tok, now=NOW)
    assert second == expected
    assert second is not first and second["roles"] is not first["roles"]


def test_cache_drops_expired_tokens(hs):
    v = verifier(hs, leeway=5)
    tok = hs_token(exp=NOW + 60)
    v.verify(tok, now=NOW)
    assert v.cache_size == 1
    assert v.verify(tok, now=NOW + 64)["sub"] == "user-1"  # inside exp + leeway: a hit
    with pytest.raises(ExpiredToken):
        v.verify(tok, now=NOW + 65)
    assert v.cache_size == 0


def test_cache_is_bounded_and_can_be_disabled(hs):
    v = verifier(hs, cache_capacity=3)
    for i in range(10):
        v.verify(hs_token(jti=f"j{i}"), now=NOW)
    assert v.cache_size == 3
    v.clear_cache()
    assert v.cache_size == 0
    off = verifier(hs, cache_capacity=0)
    off.verify(hs_token(), now=NOW)
    assert off.cache_size == 0


def test_failures_are_never_cached(hs):
    v = verifier(hs)
    with pytest.raises(InvalidClaims):
        v.verify(hs_token(aud="other"), now=NOW)
    assert v.cache_size == 0


def test_key_changes_clear_the_cache(hs):
    v = verifier(hs)
    tok = hs_token()
    v.verify(tok, now=NOW)
    assert v.cache_size == 1
    hs.add_hmac_key("k2", "HS256", b"n" * 32)
    assert v.cache_size == 0
    v.verify(tok, now=NOW)
    assert hs.remove_key("k1")
    with pytest.raises(InvalidKey):
        v.verify(tok, now=NOW)


def test_cache_hit_respects_a_clock_set_back(hs):
    v = verifier(hs)
    tok = hs_token(nbf=NOW)
    v.verify(tok, now=NOW)
    with pytest.raises(ImmatureToken):
        v.verify(tok, now=NOW - 100)


# ---- key set and encode ------------------------------------------------------------------


def test_key_loading_errors_are_plain_value_errors(material):
    ks = JwtKeySet()
    with pytest.raises(ValueError) as info:
        ks.add_hmac_key("short", "HS256", b"x" * 31)
    assert not isinstance(info.value, JWTError)
    with pytest.raises(ValueError):
        ks.add_hmac_key("k", "none", b"x" * 32)
    with pytest.raises(ValueError):
        ks.add_private_key_pem("k", "EdDSA", material["ES256"][2][1])
    with pytest.raises(ValueError):
        ks.add_private_key_pem("k", "RS256", b"garbage")
    with pytest.raises(TypeError):
        ks.add_hmac_key("k", "HS256", "a str secret is refused, bytes only")
    ks.add_hmac_key("k", "HS256", b"x" * 32)
    with pytest.raises(ValueError, match="kid"):
        ks.add_hmac_key("k", "HS256", b"y" * 32)
    assert ks.kids() == ["k"] and len(ks) == 1
    assert "xxxx" not in repr(ks)


def test_encode_key_selection(material):
    ks = keyset_for(material, "ES256", private=True, kid="es")
    ks.add_public_key_pem("ed", "EdDSA", material["EdDSA"][2][2])
    token = ks.encode({"exp": NOW + 1})  # the only signing key
    assert pyjwt.get_unverified_header(token)["kid"] == "es"
    with pytest.raises(ValueError, match="cannot sign"):
        ks.encode({"exp": NOW + 1}, kid="ed")
    ks.add_hmac_key("hs", "HS256", b"h" * 32)
    with pytest.raises(ValueError, match="kid"):
        ks.encode({"exp": NOW + 1})
    assert pyjwt.get_unverified_header(ks.encode({"exp": 1}, kid="hs"))["alg"] == "HS256"
    with pytest.raises(TypeError):
        ks.encode({"exp": NOW, "when": object()})
    with pytest.raises(ValueError):
        ks.encode({"exp": float("nan")})


def test_module_exports():
    for name in ["JwtKeySet", "JwtVerifier", "JWTError", "ExpiredToken", "ImmatureToken",
                 "InvalidSignature", "InvalidClaims", "MalformedToken", "InvalidKey"]:
        assert hasattr(_native, name), name
