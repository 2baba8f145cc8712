"""PyJWT `jwt.decode` vs `vedina._native.JwtVerifier.verify`, same checks.

Both sides check the signature, require and check `exp`, and check `iss` and
`aud`; PyJWT gets pre-loaded key objects, so neither side parses a PEM per
call. Run (the ratio table is printed at the end, hence `-s`):

    python -m pytest benches/bench_jwt.py -p no:cacheprovider --benchmark-only -s

Targets: HS256 >= 5x, HS256 cache hit >= 20x, RS256 >= 1.5x.
"""

import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from vedina._native import JwtKeySet, JwtVerifier

ISS = "https://auth.vedina.example"
AUD = "vedina-api"
TARGETS = {"HS256": 5.0, "HS256-cache-hit": 20.0, "RS256": 1.5}
_medians: dict[tuple[str, str], float] = {}


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _case(alg: str):
    """(token, PyJWT verifying key, Rust key set) for one algorithm."""
    if alg == "HS256":
        sign = verify = b"benchmark-secret-of-32-bytes-ok!"
    else:
        sign = {
            "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
            "EdDSA": ed25519.Ed25519PrivateKey.generate,
        }[alg]()
        verify = sign.public_key()
    claims = {
        "sub": "user-42", "iss": ISS, "aud": AUD, "iat": int(time.time()),
        "exp": int(time.time()) + 3600, "jti": "3f2c9a", "scope": ["watch", "rate"],
    }
    token = pyjwt.encode(claims, sign, algorithm=alg, headers={"kid": "k1"})
    ks = JwtKeySet()
    if alg == "HS256":
        ks.add_hmac_key("k1", alg, sign)
    else:
        ks.add_private_key_pem("k1", alg, _pem(sign))
    return token, verify, ks


CASES = ["HS256", "HS256-cache-hit", "RS256", "ES256", "EdDSA"]


@pytest.fixture(scope="module", autouse=True)
def ratio_table():
    yield
    print("\n\nRust speedup over PyJWT (median per call, same run)")
    for case in CASES:
        py, rs = _medians.get((case, "pyjwt")), _medians.get((case, "rust"))
        if py is None or rs is None:
            continue
        target = TARGETS.get(case)
        note = f"  target {target}x {'met' if py / rs >= target else 'MISSED'}" if target else ""
        print(f"  {case:<16} PyJWT {py * 1e6:8.2f} us   Rust {rs * 1e6:8.2f} us   {py / rs:6.1f}x{note}")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", ["pyjwt", "rust"])
def test_verify(benchmark, case, impl):
    alg = case.split("-")[0]
    token, verify_key, ks = _case(alg)
    benchmark.group = case
    if impl == "pyjwt":
        def run():
            return pyjwt.decode(token, verify_key, algorithms=[alg], audience=AUD, issuer=ISS,
                                options={"require": ["exp"]})
    else:
        verifier = JwtVerifier(ks, issuer=ISS, audience=AUD,
                               cache_capacity=10_000 if case.endswith("cache-hit") else 0)
        verifier.verify(token)  # warms the cache for the cache-hit case

        def run():
            return verifier.verify(token)
    claims = benchmark(run)
    assert claims["sub"] == "user-42"
    _medians[(case, impl)] = benchmark.stats.stats.median
