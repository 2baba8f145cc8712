"""Typed stub of ``vedina._native`` (the Rust extension).

Each hot path has its own section; sections are merged by their owners.
"""

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
