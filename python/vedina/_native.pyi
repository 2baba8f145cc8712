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
