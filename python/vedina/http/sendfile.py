"""An internal "send this file range" header, like nginx's X-Accel-Redirect.

A handler that answers with bytes of a file does not read them: it sets
``x-vedina-sendfile: <start>-<end_exclusive>;<absolute path>`` on its response,
with an empty body and the final ``content-length``. The server that sends the
response then pushes the bytes itself:

- under Granian, the bridge strips the header and calls RSGI's
  ``response_file_range`` (the bytes go from the file to the socket in Rust);
- on Robyn's own server, which has no such call, :func:`inline` (an after
  middleware installed only there) reads the range into the body.

The header never reaches a client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from robyn import Headers, Request, Response

HEADER = "x-vedina-sendfile"


@dataclass(frozen=True, slots=True)
class FileRange:
    path: str
    start: int
    end: int  # exclusive

    def header_value(self) -> str:
        return f"{self.start}-{self.end};{self.path}"

    @classmethod
    def parse(cls, value: str) -> FileRange:
        span, _, path = value.partition(";")
        start, _, end = span.partition("-")
        return cls(path=path, start=int(start), end=int(end))


def take(headers: list[tuple[str, str]]) -> FileRange | None:
    """Remove the sendfile header from ``headers`` and return its range, if any."""
    for index, (name, value) in enumerate(headers):
        if name.lower() == HEADER:
            del headers[index]
            return FileRange.parse(value)
    return None


def inline(request: Request, response: Response) -> Response:
    """Robyn-server fallback: replace the header by the file's bytes."""
    value = response.headers.get(HEADER)
    if value is None:
        return response
    file_range = FileRange.parse(value)
    fd = os.open(file_range.path, os.O_RDONLY)
    try:
        body = os.pread(fd, file_range.end - file_range.start, file_range.start)
    finally:
        os.close(fd)
    headers = response.headers
    kept = [(n, v) for n, v in headers.multi_items() if n != HEADER]

    fresh = Headers({})
    for name, v in kept:
        fresh.append(name, v)
    # Also for HEAD: Robyn's server derives Content-Length from the body and
    # drops the body of a HEAD answer itself, so an empty one would say 0.
    return Response(status_code=response.status_code, headers=fresh, description=body)
