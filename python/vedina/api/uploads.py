"""/api/uploads: resumable uploads, tus 1.0.0 (core, creation, termination, checksum).

Thin: read the tus headers, call :class:`~vedina.services.uploads.UploadService`,
answer with the tus headers. Every answer of these routes, errors included,
carries ``Tus-Resumable``; a request without ``Tus-Resumable: 1.0.0`` (OPTIONS
aside) is refused with 412 and ``Tus-Version``. PATCH bodies may be as large as
``UPLOAD_CHUNK_MAX_BYTES`` (the route's own body limit, see
:func:`vedina.http.routes.body_limit`); everything else keeps ``MAX_BODY_BYTES``.

The creation URL is ``/api/uploads`` (Robyn drops trailing slashes from routes).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC
from email.utils import format_datetime

from robyn import Headers, Request, Response, SubRouter

from vedina.errors import AppError, BadRequest, PreconditionFailed, UnsupportedMediaType
from vedina.http.auth import admit_with, principal_of, requires
from vedina.http.operation import doc
from vedina.http.routes import body_limit
from vedina.services.uploads import (
    CHECKSUM_ALGORITHMS,
    TUS_EXTENSIONS,
    TUS_VERSION,
    parse_checksum,
    parse_metadata,
)
from vedina.state import AppState
from vedina.storage.uploads import Upload

PREFIX = "/api/uploads"
CHUNK_TYPE = "application/offset+octet-stream"
_TUS = {"tus-resumable": TUS_VERSION}
_DIGITS = re.compile(r"^[0-9]{1,19}$")
# Who may upload: editors and admins, and API keys granted either scope.
UPLOAD_PERMISSIONS = ("catalog:write", "media:ingest")


def tus(handler):
    """Outermost on each route: the version check, and ``Tus-Resumable`` on every answer."""

    @functools.wraps(handler)
    async def answer(request: Request):
        try:
            if request.method != "OPTIONS" and request.headers.get("tus-resumable") != TUS_VERSION:
                raise PreconditionFailed(f"Send Tus-Resumable: {TUS_VERSION}",
                                         details={"field": "Tus-Resumable"}, headers={"tus-version": TUS_VERSION})
            response = await handler(request)
        except AppError as exc:
            exc.headers = {**exc.headers, **_TUS}  # a copy: some errors share a module-level dict
            raise
        response.headers.set("tus-resumable", TUS_VERSION)
        return response

    del answer.__wrapped__  # the guard below must stay in the route (see http.auth.requires)
    return answer


def _number(request: Request, header: str) -> int:
    raw = request.headers.get(header)
    if raw is None or not _DIGITS.match(raw.strip()):
        raise BadRequest(f"{header} must be a non-negative integer", details={"field": header})
    return int(raw.strip())


def _http_date(upload: Upload) -> str:
    return format_datetime(upload.expires_at.replace(tzinfo=UTC), usegmt=True)


def _empty(status: int, headers: dict[str, str]) -> Response:
    return Response(status, Headers({"cache-control": "no-store", **headers}), b"")


def register(router: SubRouter, state: AppState) -> None:
    settings = state.settings

    def csrf():
        return state.services.csrf

    @router.options("/", openapi_name="tus: the server's version, extensions and limits")
    @doc(public=True, answers={204: None})
    @tus
    async def discover(request: Request):
        return _empty(204, {
            "tus-version": TUS_VERSION,
            "tus-extension": ",".join(TUS_EXTENSIONS),
            "tus-max-size": str(settings.upload_max_bytes),
            "tus-checksum-algorithm": ",".join(CHECKSUM_ALGORITHMS),
        })

    @router.post("/", openapi_name="tus: create an upload (Upload-Length, Upload-Metadata)")
    @doc(headers=("Tus-Resumable", "Upload-Length", "Upload-Metadata"),
         required=("Tus-Resumable", "Upload-Length", "Upload-Metadata"), answers={201: None})
    @tus
    @requires(*UPLOAD_PERMISSIONS, csrf_tokens=csrf)
    async def create_upload(request: Request):
        """Upload-Metadata (base64 values): movie_id, filename (required); kind (video | subtitle),
        filetype, language. Answers 201 with Location; send the bytes with PATCH."""
        if request.headers.get("upload-defer-length") is not None:
            raise BadRequest("Upload-Defer-Length is not supported: send Upload-Length",
                             details={"field": "Upload-Defer-Length"})
        uploads = state.services.uploads
        upload = await uploads.create(
            owner_id=await uploads.owner_of(principal_of(request)),
            length=_number(request, "upload-length"),
            metadata=parse_metadata(request.headers.get("upload-metadata")),
        )
        return _empty(201, {"location": f"{PREFIX}/{upload.id}", "upload-expires": _http_date(upload)})

    @router.head("/:id", openapi_name="tus: an upload's offset")
    @doc(path={"id": str}, headers=("Tus-Resumable",), required=("Tus-Resumable",), answers={200: None})
    @tus
    @requires(*UPLOAD_PERMISSIONS, csrf_tokens=csrf)
    async def upload_offset(request: Request):
        uploads = state.services.uploads
        upload = await uploads.status(upload_id=request.path_params.get("id", ""),
                                      owner_id=await uploads.owner_of(principal_of(request)))
        return _empty(200, {
            "upload-offset": str(upload.offset_bytes), "upload-length": str(upload.length),
            "upload-expires": _http_date(upload),
        })

    @router.patch("/:id", openapi_name="tus: append a chunk at Upload-Offset")
    @doc(path={"id": str}, body=CHUNK_TYPE, headers=("Tus-Resumable", "Upload-Offset", "Upload-Checksum"),
         required=("Tus-Resumable", "Upload-Offset"), answers={204: None})
    @body_limit(settings.upload_chunk_max_bytes, admit=admit_with(lambda: state.services.authenticator, *UPLOAD_PERMISSIONS))
    @tus
    @requires(*UPLOAD_PERMISSIONS, csrf_tokens=csrf)
    async def append_chunk(request: Request):
        """Content-Type: application/offset+octet-stream; Upload-Offset; optional Upload-Checksum
        (sha1, sha256 or md5; a mismatch is 460 and the chunk is dropped). Answers 204 with Upload-Offset."""
        content_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if content_type != CHUNK_TYPE:
            raise UnsupportedMediaType(f"Send the chunk as {CHUNK_TYPE}", details={"field": "content-type"})
        offset = _number(request, "upload-offset")
        checksum_header = request.headers.get("upload-checksum")
        checksum = parse_checksum(checksum_header) if checksum_header is not None else None
        body = request.body
        data = body.encode() if isinstance(body, str) else body  # Robyn's own server hands UTF-8 bodies as text
        uploads = state.services.uploads
        upload = await uploads.append(
            upload_id=request.path_params.get("id", ""), owner_id=await uploads.owner_of(principal_of(request)),
            offset=offset, data=data or b"", checksum=checksum,
        )
        return _empty(204, {"upload-offset": str(upload.offset_bytes), "upload-expires": _http_date(upload)})

    @router.delete("/:id", openapi_name="tus: terminate an upload (its row and bytes)")
    @doc(path={"id": str}, headers=("Tus-Resumable",), required=("Tus-Resumable",), answers={204: None})
    @tus
    @requires(*UPLOAD_PERMISSIONS, csrf_tokens=csrf)
    async def terminate_upload(request: Request):
        uploads = state.services.uploads
        await uploads.terminate(upload_id=request.path_params.get("id", ""),
                                owner_id=await uploads.owner_of(principal_of(request)))
        return _empty(204, {})
