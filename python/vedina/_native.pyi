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

class HostRateLimiter:
    """GCRA limiter whose state lives in a memory-mapped file shared by every
    process of the host that opens the same ``path`` (e.g. under ``/dev/shm``):
    exact decisions across processes, lock-free, no server round trip.

    The file is created with ``capacity`` slots (16 bytes each; default 65536 =
    1 MiB) if missing; an existing file must have the same capacity
    (``ValueError`` otherwise). A key whose probe window (32 slots) holds only
    live keys is not tracked: the request is allowed when ``fail_open`` (the
    default: the cluster tier still limits, and a key flood cannot lock out
    legitimate users), refused otherwise; ``RateDecision.tracked`` tells.

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
        ``ValueError``). ``now`` is unix seconds (default: the system clock).
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
