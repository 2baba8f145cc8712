"""Conditional and Range requests on a static file (RFC 9110 §13 and §14).

Plain functions, no web framework: the handler hands in the request's header
values and the file's metadata, and gets back what to send.

    >>> meta = FileMeta(size=1000, mtime_ns=1_700_000_000_000_000_000, inode=42)
    >>> decide(meta, range_header="bytes=0-99")
    Decision(status=206, ranges=[(0, 100)])
    >>> decide(meta, range_header="bytes=0-99", if_range='"stale"')
    Decision(status=200, ranges=[(0, 1000)])

The order of evaluation is RFC 9110 §13.2.2: If-None-Match (else
If-Modified-Since) may end in 304; then Range, honoured only when If-Range
(if sent) still matches. Range parsing is ``vedina._native.parse_range``,
whose rules follow nginx (coalescing, the "ranges add up to more than the
file" refusal, at most 16 ranges); its ``RangeNotSatisfiable`` is translated
here, once, into the HTTP error (416 with ``Content-Range: bytes */size``).

A response with several ranges is ``multipart/byteranges``. Its layout is
nginx's, so the Content-Length is known before the first byte is read:

    CRLF "--" boundary CRLF
    "Content-Type: " type CRLF
    "Content-Range: bytes a-b/size" CRLF CRLF
    <bytes a..b>                               (repeated per range)
    CRLF "--" boundary "--" CRLF
"""

from __future__ import annotations

import email.utils
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from vedina import _native
from vedina.errors import RangeNotSatisfiable

CHUNK_BYTES = 64 * 1024
MAX_RANGES = 16


@dataclass(frozen=True, slots=True)
class FileMeta:
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, stat: os.stat_result) -> FileMeta:
        return cls(size=stat.st_size, mtime_ns=stat.st_mtime_ns, inode=stat.st_ino)

    @property
    def etag(self) -> str:
        """Strong validator: changes whenever the file is replaced or rewritten."""
        return f'"{self.size:x}-{self.mtime_ns:x}-{self.inode:x}"'

    @property
    def mtime(self) -> int:
        return self.mtime_ns // 1_000_000_000

    @property
    def last_modified(self) -> str:
        return email.utils.formatdate(self.mtime, usegmt=True)


@dataclass(frozen=True, slots=True)
class Decision:
    status: int  # 200, 206 or 304
    ranges: list[tuple[int, int]]  # half-open; the whole file for 200, empty for 304


def _http_date(value: str) -> int | None:
    """Seconds since the epoch of an HTTP-date, or None if it is not one."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return int(parsed.timestamp())


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: ``W/"x"`` matches ``"x"``."""
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def not_modified(meta: FileMeta, *, if_none_match: str | None, if_modified_since: str | None) -> bool:
    """RFC 9110 §13.1.2-3: If-None-Match wins; If-Modified-Since only without it."""
    if if_none_match is not None:
        return etag_matches(if_none_match, meta.etag)
    if if_modified_since is not None:
        since = _http_date(if_modified_since)
        return since is not None and meta.mtime <= since
    return False


def if_range_matches(meta: FileMeta, if_range: str) -> bool:
    """RFC 9110 §13.1.5: a strong entity tag equal to ours, or our exact Last-Modified date."""
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == meta.etag  # a weak tag never matches
    since = _http_date(value)
    return since is not None and since == meta.mtime


def parse(range_header: str, size: int) -> list[tuple[int, int]] | None:
    """``_native.parse_range`` with its refusal turned into the 416 AppError."""
    try:
        return _native.parse_range(range_header, size, max_ranges=MAX_RANGES)
    except _native.RangeNotSatisfiable as exc:
        raise RangeNotSatisfiable(
            f"No satisfiable range in {range_header[:100]!r} for {size} bytes",
            details={"size": size},
            headers={"content-range": f"bytes */{size}"},
        ) from exc


def decide(
    meta: FileMeta,
    *,
    range_header: str | None = None,
    if_range: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
) -> Decision:
    """What to answer for a GET (or HEAD) of the file. Raises the 416 error."""
    if not_modified(meta, if_none_match=if_none_match, if_modified_since=if_modified_since):
        return Decision(304, [])
    whole = Decision(200, [(0, meta.size)])
    if range_header is None or (if_range is not None and not if_range_matches(meta, if_range)):
        return whole
    ranges = parse(range_header, meta.size)
    return whole if ranges is None else Decision(206, ranges)


def content_range(start: int, end: int, size: int) -> str:
    return f"bytes {start}-{end - 1}/{size}"


@dataclass(frozen=True, slots=True)
class Multipart:
    """A multipart/byteranges body: its headers are computed, its bytes streamed."""

    ranges: list[tuple[int, int]]
    size: int
    part_type: str
    boundary: str

    @classmethod
    def new(cls, ranges: list[tuple[int, int]], *, size: int, part_type: str) -> Multipart:
        # 20 characters, like nginx's zero-padded counter: same overhead per part.
        return cls(ranges=ranges, size=size, part_type=part_type, boundary=secrets.token_hex(10))

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"

    def part_header(self, start: int, end: int) -> bytes:
        return (
            f"\r\n--{self.boundary}\r\nContent-Type: {self.part_type}\r\n"
            f"Content-Range: {content_range(start, end, self.size)}\r\n\r\n"
        ).encode("latin-1")

    @property
    def trailer(self) -> bytes:
        return f"\r\n--{self.boundary}--\r\n".encode("latin-1")

    @property
    def content_length(self) -> int:
        parts = sum(len(self.part_header(s, e)) + (e - s) for s, e in self.ranges)
        return parts + len(self.trailer)

    async def stream(self, path: str) -> AsyncIterator[bytes]:
        """The body, read with pread in CHUNK_BYTES pieces (never the whole file).

        The file is opened on the first iteration, so a HEAD that never
        iterates opens nothing.
        """
        fd = os.open(path, os.O_RDONLY)
        try:
            for start, end in self.ranges:
                yield self.part_header(start, end)
                offset = start
                while offset < end:
                    chunk = os.pread(fd, min(CHUNK_BYTES, end - offset), offset)
                    if not chunk:  # the file shrank under us: end the stream short
                        raise OSError(f"{path} shorter than expected at offset {offset}")
                    offset += len(chunk)
                    yield chunk
            yield self.trailer
        finally:
            os.close(fd)
