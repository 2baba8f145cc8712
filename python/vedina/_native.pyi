"""Typed stub of ``vedina._native`` (the Rust extension).

Each hot path has its own section; sections are merged by their owners.
"""

import os

# ---------------------------------------------------------------------------
# Exceptions (rust_ext/src/errors.rs)
# ---------------------------------------------------------------------------

class RangeNotSatisfiable(ValueError):
    """Valid ``Range`` header but no satisfiable range: answer 416 with
    ``Content-Range: bytes */<size>``."""

class SignatureError(Exception):
    """Base of every request/webhook signature refusal (answer 401/403)."""

class SignatureMismatch(SignatureError):
    """Well formed and fresh, but the signature does not match."""

class SignatureExpired(SignatureError):
    """The signed timestamp is outside the allowed clock-skew window."""

class MalformedSignature(SignatureError):
    """The signature header, or a header it depends on, cannot be parsed."""

# ---------------------------------------------------------------------------
# HTTP Range (rust_ext/src/range.rs)
# ---------------------------------------------------------------------------

def parse_range(header: str, size: int, *, max_ranges: int = 16) -> list[tuple[int, int]] | None:
    """Parse a ``Range`` header (RFC 9110 §14) for a file of ``size`` bytes.

    Returns sorted, coalesced (overlapping or adjacent merged) half-open
    ``(start, end_exclusive)`` ranges, or ``None`` meaning "ignore the header
    and send the whole file with 200": invalid syntax, a unit other than
    ``bytes``, more than ``max_ranges`` range-specs (default 16), or ranges
    whose lengths add up to more than the file (nginx's rule).
    Raises :class:`RangeNotSatisfiable` when the syntax is valid but no range
    is satisfiable (every range of a 0-byte file is unsatisfiable).

    >>> parse_range("bytes=0-99,50-149, -10", 1000)
    [(0, 150), (990, 1000)]
    >>> parse_range("bytes=-5000", 1000)        # suffix longer than the file
    [(0, 1000)]
    >>> parse_range("items=0-1", 1000) is None  # unknown unit: send 200
    True
    >>> parse_range("bytes=1000-", 1000)
    Traceback (most recent call last):
    RangeNotSatisfiable: no satisfiable range: bytes */1000
    """

# ---------------------------------------------------------------------------
# AWS SigV4 request signatures (rust_ext/src/sigv4.rs)
# ---------------------------------------------------------------------------

class SigV4Authorization:
    """A parsed ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``.

    >>> a = parse_sigv4_authorization(request_headers["authorization"])
    >>> secret = secrets_by_key_id[a.access_key_id]   # then verify_sigv4(...)
    """

    @property
    def access_key_id(self) -> str: ...
    @property
    def date(self) -> str:
        """Credential scope date, ``yyyymmdd``."""
    @property
    def region(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def signed_headers(self) -> list[str]:
        """Lower-case header names in signing order."""
    @property
    def signature(self) -> str:
        """64 lower-case hex digits: the value a replay cache remembers."""

def parse_sigv4_authorization(header: str) -> SigV4Authorization:
    """Parse a SigV4 ``Authorization`` header; raises :class:`MalformedSignature`."""

def verify_sigv4(
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    secret: str,
    *,
    region: str,
    service: str = "vedina",
    now: int | None = None,
    max_skew: int = 300,
) -> None:
    """Verify an AWS SigV4 (AWS4-HMAC-SHA256) signed request.

    ``path`` is the raw request path as received (still percent-encoded);
    ``query`` the raw query string without ``?``; ``headers`` every received
    header (must contain ``Authorization``, ``Host`` and ``X-Amz-Date``);
    ``now`` unix seconds (default: the system clock).

    Returns None when valid. Raises :class:`MalformedSignature` (unparseable
    Authorization, ``host``/``x-amz-date`` not signed, a signed header missing,
    ``x-amz-content-sha256: UNSIGNED-PAYLOAD``: unsigned payloads are refused),
    :class:`SignatureExpired` (``x-amz-date`` more than ``max_skew`` seconds
    from ``now``), :class:`SignatureMismatch` (wrong secret, tampered request,
    credential scope not ``<date of x-amz-date>/region/service``,
    ``x-amz-content-sha256`` not the body's hash).

    Replay protection is the caller's: remember
    ``parse_sigv4_authorization(...).signature`` for ``max_skew`` seconds.

    >>> auth = parse_sigv4_authorization(dict(headers)["Authorization"])
    >>> verify_sigv4("POST", "/api/v1/movies", "a=1", headers, body,
    ...              secret_for(auth.access_key_id), region="eu-west-1", now=int(time.time()))
    """

def sign_sigv4(
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    access_key_id: str,
    secret: str,
    region: str,
    service: str = "vedina",
    now: int | None = None,
    content_sha256: bool = True,
) -> list[tuple[str, str]]:
    """Sign a request; returns the headers to add: ``x-amz-date``,
    ``x-amz-content-sha256`` (when ``content_sha256``, default True) and
    ``Authorization``. Every header given is signed; ``Host`` is required.

    >>> extra = sign_sigv4("GET", "/api/v1/movies", "", [("Host", "api.vedina.test")], b"",
    ...                    access_key_id="AK", secret="s3cr3t", region="eu-west-1", now=1700000000)
    >>> [name for name, _ in extra]
    ['x-amz-date', 'x-amz-content-sha256', 'Authorization']
    """

# ---------------------------------------------------------------------------
# Webhook signatures (rust_ext/src/webhook.rs)
# ---------------------------------------------------------------------------

def sign_webhook(secret: bytes, timestamp: int, body: bytes) -> str:
    """``t=<timestamp>,v1=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>``.

    >>> sign_webhook(b"whsec", 1700000000, b"{}")[:16]
    't=1700000000,v1='
    """

def verify_webhook(
    header: str, secrets: list[bytes], body: bytes, *, now: int | None = None, tolerance: int = 300
) -> None:
    """Verify a webhook signature header against any of ``secrets`` (rotation:
    the header may carry several ``v1=`` values; unknown keys are ignored).

    Raises :class:`MalformedSignature` (no/duplicate ``t``, no ``v1``, bad hex),
    :class:`SignatureExpired` (``|now - t| > tolerance``, default 300 s),
    :class:`SignatureMismatch`; ``ValueError`` if ``secrets`` is empty.

    >>> h = sign_webhook(b"new", 1000, b"{}")
    >>> verify_webhook(h, [b"old", b"new"], b"{}", now=1100)
    """

# ---------------------------------------------------------------------------
# Host-tier rate limiting: GCRA over shared memory (rust_ext/src/ratelimit/)
# ---------------------------------------------------------------------------

class RateDecision:
    """The answer of a GCRA rate limiter (frozen, comparable with ``==``)."""

    @property
    def allowed(self) -> bool: ...
    @property
    def limit(self) -> int:
        """The burst: the most requests possible at once (``remaining`` counts down from it)."""
    @property
    def remaining(self) -> int: ...
    @property
    def retry_after(self) -> float:
        """Seconds until this request would be allowed; 0.0 when allowed."""
    @property
    def reset_after(self) -> float:
        """Seconds until the key is back at its full burst."""
    @property
    def tracked(self) -> bool:
        """False when the host table had no slot for the key (then ``fail_open`` decided)."""
    @property
    def evicted(self) -> bool:
        """True when the host table evicted another live key to track this one."""

class HostRateLimiter:
    """GCRA limiter whose state lives in a memory-mapped file shared by every
    process of the host that opens the same ``path`` (e.g. under ``/dev/shm``):
    exact decisions across processes, lock-free, no server round trip.

    The file is created with ``capacity`` slots (16 bytes each; default 65536 =
    1 MiB) if missing; an existing file must have the same capacity
    (``ValueError`` otherwise). A key whose probe window (32 slots) holds only
    live keys evicts the one closest to full burst (``RateDecision.evicted``),
    so a flood of keys never switches limiting off. Only when every slot of the
    window is being handed over at that instant is the key untracked: allowed
    when ``fail_open``, refused otherwise (``RateDecision.tracked`` tells).

    >>> rl = HostRateLimiter("/dev/shm/vedina-ratelimit", 65536)
    >>> d = rl.check("ip:203.0.113.7", limit=10, period=1.0, burst=20)
    >>> d.allowed, d.remaining
    (True, 19)
    """

    def __init__(self, path: str | os.PathLike[str], capacity: int = 65536, *, fail_open: bool = True) -> None: ...
    def check(
        self, key: str, *, limit: int, period: float, burst: int, cost: int = 1, now: float | None = None
    ) -> RateDecision:
        """Decide one request for ``key``: ``limit`` requests per ``period``
        seconds, up to ``burst`` (>= 1) at once from idle, this one costing
        ``cost`` (default 1; 0 inspects without consuming; > burst is a
        ``ValueError``). ``now`` is in seconds on one clock for all callers
        of the table (default: CLOCK_MONOTONIC, never stepped back).
        A denied request does not consume anything.
        """
    def reset(self, key: str) -> None:
        """Forget ``key``: its next request starts from a full burst."""
    @property
    def path(self) -> str: ...
    @property
    def capacity(self) -> int: ...
    @property
    def fail_open(self) -> bool: ...
    def occupied(self) -> int:
        """Slots holding a key (O(capacity): tests and metrics)."""

class GenerationTable:
    """Invalidation generations shared by every process of the host that opens
    the same ``path``: a counter per key (hashed into ``capacity`` counters,
    8 bytes each; default 65536 = 512 KiB) and an epoch. Writers ``bump`` the
    keys their change touched after it committed; readers compare ``stamp``\ s.

    >>> table = GenerationTable("/dev/shm/vedina-gen")
    >>> stamp = table.stamp("auth:user:7", "auth:session:abc")
    >>> table.bump("auth:user:7")
    >>> table.stamp("auth:user:7", "auth:session:abc") == stamp
    False
    """

    def __init__(self, path: str | os.PathLike[str], capacity: int = 65536) -> None: ...
    def stamp(self, *keys: str) -> int:
        """Equal to an earlier stamp of the same keys iff none was bumped since (nor everything)."""
    def bump(self, *keys: str) -> None:
        """Invalidate what depends on any of ``keys``."""
    def bump_all(self) -> None:
        """Invalidate everything (a push channel that may have lost messages)."""
    @property
    def path(self) -> str: ...
    @property
    def capacity(self) -> int: ...

def gcra_decide(
    tat_ns: int, now_ns: int, *, limit: int, period: float, burst: int, cost: int = 1
) -> tuple[RateDecision, int]:
    """One pure GCRA step (formulas in rust_ext/src/ratelimit/gcra.rs, shared
    with the cluster tier's Lua script): the decision for a key whose stored
    TAT is ``tat_ns`` (0 = unknown key) and the TAT to store (unchanged when
    denied).

    >>> d, tat = gcra_decide(0, 10**18, limit=10, period=1.0, burst=2)
    >>> d.allowed, d.remaining, tat - 10**18
    (True, 1, 100000000)
    """

# --- JWT (rust_ext/src/jwt) -------------------------------------------------
# Typed stub for the JWT part of vedina._native. Other sections of this file
# belong to other subsystems and are merged in separately.

class JWTError(ValueError):
    """Base class of every token rejection (never raised for bad key config).

    Messages are fixed texts: they never contain the token or any key.

    >>> try:
    ...     verifier.verify(token)
    ... except JWTError:
    ...     return 401
    """

class ExpiredToken(JWTError):
    """``exp`` (+ leeway) has passed: ``exp <= now - leeway``."""

class ImmatureToken(JWTError):
    """``nbf`` or ``iat`` lies in the future: ``> now + leeway``."""

class InvalidSignature(JWTError):
    """The signature or MAC does not verify (e.g. a changed payload)."""

class InvalidClaims(JWTError):
    """A claim is missing, mistyped or wrong, or the header has ``crit``.

    Covers: no ``exp``; ``exp``/``nbf``/``iat`` not a JSON number (a string
    ``exp`` is *not* treated as absent); ``iss`` not equal to the configured
    issuer; ``aud`` not containing the configured audience; ``aud`` present
    when no audience is configured; any ``crit`` header (none is supported).
    """

class MalformedToken(JWTError):
    """Not three base64url parts, bad base64/JSON, or a header/payload that
    is not a JSON object; also tokens longer than 16 KiB."""

class InvalidKey(JWTError):
    """The token names a key or algorithm we will not use.

    ``alg`` is ``none`` or unsupported, ``alg`` differs from the selected
    key's algorithm (this is how an HS256 token "signed" with an RSA public
    key is rejected), the ``kid`` is unknown, or there is no ``kid`` while
    the key set holds more than one key.
    """

class JwtKeySet:
    """Keys by ``kid``; each key is bound to one algorithm when loaded.

    Several keys may be active at once (rotation). Algorithms: HS256, HS384,
    HS512 (``add_hmac_key`` only), RS256, ES256, EdDSA (Ed25519, from PEM).
    Key-loading errors raise plain ``ValueError`` (not ``JWTError``), so an
    auth handler that catches ``JWTError`` cannot hide a misconfiguration.
    Every change clears the token caches of the verifiers using this set.

    >>> keys = JwtKeySet()
    >>> keys.add_hmac_key("2025-01", "HS256", secrets.token_bytes(32))
    >>> keys.add_public_key_pem("idp-1", "RS256", open("idp.pem", "rb").read())
    >>> keys.kids()
    ['2025-01', 'idp-1']
    """

    def __init__(self) -> None: ...
    def add_hmac_key(self, kid: str, alg: str, secret: bytes) -> None:
        """Add an HMAC secret. ``alg`` is HS256/HS384/HS512; the secret must
        be at least 32/48/64 bytes (RFC 7518 3.2). A duplicate kid raises
        ``ValueError`` (remove the old key first)."""
    def add_public_key_pem(self, kid: str, alg: str, pem: bytes) -> None:
        """Add a verify-only key: ``-----BEGIN PUBLIC KEY-----`` (SPKI), or
        ``RSA PUBLIC KEY`` for RS256. RSA keys must be >= 2048 bits."""
    def add_private_key_pem(self, kid: str, alg: str, pem: bytes) -> None:
        """Add a key that signs and verifies: unencrypted PKCS#8
        ``PRIVATE KEY``, or ``RSA PRIVATE KEY`` for RS256."""
    def remove_key(self, kid: str) -> bool:
        """Remove a key; True if it was there. Its tokens stop verifying at
        once (verifier caches are cleared)."""
    def kids(self) -> list[str]:
        """The kids, sorted."""
    def __len__(self) -> int: ...
    def encode(self, claims: dict[str, object], kid: str | None = None) -> str:
        """Sign ``claims`` with key ``kid``, or with the only signing key
        (HMAC or private) when ``kid`` is None. Header:
        ``{"alg": ..., "typ": "JWT", "kid": ...}``. Values may be None, bool,
        int (64-bit), float (finite), str, list, tuple and dict. ``exp`` is
        not added for you.

        >>> token = keys.encode({"sub": "u1", "exp": int(time.time()) + 900}, kid="2025-01")
        """

class JwtVerifier:
    """Verifies tokens against a ``JwtKeySet``; options fixed at build time.

    - ``issuer`` (default None: not checked): exact ``iss`` required.
    - ``audience`` (default None): ``aud`` (str or list) must contain it;
      when None, a token that has ``aud`` is rejected (as PyJWT does).
    - ``leeway`` (default 0.0 s): clock skew allowed on exp/nbf/iat.
    - ``cache_capacity`` (default 10_000; 0 disables): verified tokens are
      cached by token string until their ``exp`` + leeway; when full, the
      entry expiring soonest is evicted; cleared whenever the key set changes.

    The cache does not know about revocation: a revoked but unexpired token
    is still a hit. The caller checks ``jti`` (or the session) itself on
    every request.

    >>> verifier = JwtVerifier(keys, issuer="https://auth.vedina.example", audience="vedina-api")
    >>> claims = verifier.verify(request_token)
    >>> claims["sub"]
    'u1'
    """

    def __init__(
        self,
        keys: JwtKeySet,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 0.0,
        cache_capacity: int = 10000,
    ) -> None: ...
    def verify(self, token: str, *, now: float | None = None) -> dict[str, object]:
        """Check signature, header rules and claims; return the claims as a
        new dict (also on a cache hit, so changing it cannot affect later
        calls). JSON integers come back as int, other numbers as float.
        ``exp`` is required. ``now`` (Unix seconds) is for tests; default is
        the system clock.

        >>> verifier.verify(token, now=1_800_000_000.0)
        {'sub': 'u1', 'exp': 1800000900}
        """
    def verify_jws(self, token: str) -> bytes:
        """Check the signature and header rules only and return the raw
        payload bytes (no claim checks; the payload need not be JSON).

        >>> verifier.verify_jws("eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY...")
        b'Example of Ed25519 signing'
        """
    @property
    def cache_size(self) -> int:
        """Number of cached tokens (for tests and metrics)."""
    def clear_cache(self) -> None: ...
# --- end JWT ------------------------------------------------------------------

# ---------------------------------------------------------------------------
# Signed playback URLs (rust_ext/src/playback.rs)
# ---------------------------------------------------------------------------

class PlaybackGrant:
    """What a valid playback token grants (frozen)."""

    @property
    def user_id(self) -> int: ...
    @property
    def asset_id(self) -> int: ...
    @property
    def expires_at(self) -> int:
        """Unix seconds; the token is refused from this second on."""
    @property
    def session_id(self) -> str | None:
        """The playback session the token is bound to, or None."""

class PlaybackSigner:
    """Signs and verifies playback tokens ``<exp>.<user>.<asset>.<session>.<sig>``:
    ``sig`` is the unpadded base64url HMAC-SHA256, with ``key`` (at least 32
    bytes, else ``ValueError``), of ``b"vedina-playback-v1\\n" + <exp>.<user>.<asset>.<session>``.
    The decimal fields are canonical (no sign, no leading zero); ``session`` is
    ``[A-Za-z0-9_-]{0,64}``, empty when the token is not bound to a session.
    Tokens are at most 256 bytes. The MAC is compared in constant time.

    >>> signer = PlaybackSigner(derive_key(secret, "playback"))
    >>> token = signer.sign(user_id=7, asset_id=42, expires_at=1700000300, session_id="s1")
    >>> token.split(".")[:4]
    ['1700000300', '7', '42', 's1']
    >>> signer.verify(token, asset_id=42, now=1700000000).session_id
    's1'
    """

    def __init__(self, key: bytes) -> None: ...
    def sign(self, *, user_id: int, asset_id: int, expires_at: int, session_id: str | None = None) -> str:
        """The token; ``ValueError`` for ids outside 1..10**18-1, ``expires_at`` < 1 or a bad session id."""
    def verify(self, token: str, *, asset_id: int, now: int | None = None) -> PlaybackGrant:
        """Check, in this order: the shape (:class:`MalformedSignature`), the MAC
        (:class:`SignatureMismatch`), that the token is for ``asset_id``
        (:class:`SignatureMismatch`), and ``now < exp`` (:class:`SignatureExpired`;
        ``now`` in unix seconds, default the system clock). Session liveness is the caller's."""
