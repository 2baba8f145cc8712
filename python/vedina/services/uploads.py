"""Resumable uploads (tus 1.0.0: core, creation, termination, checksum): the protocol's rules.

An upload is a row (:mod:`vedina.storage.uploads`) and a part file,
``MEDIA_ROOT/uploads/<id>.part``. The rule that makes it crash-safe:

    **the row's offset is the truth.** A PATCH takes an exclusive lock on the
    part file (``flock``, non-blocking: a second writer gets 409 at once),
    reads the row again, truncates the file to the row's offset (dropping
    whatever a writer that died left past it), writes the chunk, ``fsync``s,
    and only then moves the offset by compare-and-set. A process killed
    anywhere in between leaves the row at the old offset; the next request
    truncates the file back to it.

Completion is one transaction: the chunk that reaches ``Upload-Length`` is
written, the part file is hard-linked to its final name
``MEDIA_ROOT/uploads/movies/<movie_id>/<upload id>.<ext>`` (never a name the
client chose: its filename is only the asset's label), and then the media
asset (status ``pending``), its ``media.probe`` job and the row's final offset
commit together. A retried final PATCH after a crash either finds the offset
still short (and completes once) or at the length (409, nothing created), so
an upload makes at most one asset. A link left by a transaction that did not
commit is replaced by the next attempt or removed with the upload.

>>> upload = await uploads.create(owner_id=7, length=1_048_576, metadata=parse_metadata(header))
>>> upload = await uploads.append(upload_id=upload.id, owner_id=7, offset=0, data=chunk, checksum=None)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path, PurePosixPath

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.errors import BadRequest, ChecksumMismatch, Conflict, Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from vedina.jobs import media_probe
from vedina.services.catalog import CatalogService
from vedina.services.media import CONTENT_TYPES
from vedina.services.principals import Principal
from vedina.storage.api_keys import ApiKeyRepository
from vedina.storage.clock import utcnow
from vedina.storage.durable import fsync_path
from vedina.storage.movies import MovieRepository
from vedina.storage.outbox import enqueue
from vedina.storage.uploads import Upload, UploadRepository

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = ("creation", "termination", "checksum")
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}
# What may be uploaded, by kind: extensions the media endpoint serves with a known type.
UPLOAD_EXTENSIONS = {"video": (".mp4", ".m4v", ".webm", ".mkv", ".ts"), "subtitle": (".vtt",)}
_EXTENSION_OF_TYPE = {CONTENT_TYPES[ext]: ext for exts in UPLOAD_EXTENSIONS.values() for ext in reversed(exts)}
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_METADATA_KEY = re.compile(r"^[\x21-\x2b\x2d-\x7e]{1,64}$")  # printable ASCII, no space or comma
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SWEEP_BATCH = 500


class Checksum(msgspec.Struct, frozen=True):
    algorithm: str
    digest: bytes


class UploadMeta(msgspec.Struct, frozen=True, kw_only=True):
    """What the creation request's metadata says, checked."""

    movie_id: int
    filename: str
    kind: str
    extension: str  # chosen from UPLOAD_EXTENSIONS, never taken verbatim from the client
    content_type: str
    language: str | None
    label: str


# -- parsing the protocol's header values -----------------------------------------------


def _b64(value: str, *, field: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise BadRequest(f"{field} is not valid base64", details={"field": field}) from None


def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata: key base64,key2 base64,flag`` -> {key: text}; a malformed pair is a 400 naming its key.

    >>> parse_metadata("filename bWVvdy5tcDQ=,movie_id MQ==")
    {'filename': 'meow.mp4', 'movie_id': '1'}
    """
    pairs: dict[str, str] = {}
    for item in (header or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition(" ")
        if not _METADATA_KEY.match(key) or key in pairs or " " in value.strip():
            raise BadRequest("Upload-Metadata must be comma-separated 'key base64' pairs with unique keys",
                             details={"field": "Upload-Metadata", "key": key[:64]})
        raw = _b64(value.strip(), field=key)
        try:
            pairs[key] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{key} is not UTF-8 text", details={"field": key}) from None
    return pairs


def parse_checksum(header: str) -> Checksum:
    """``Upload-Checksum: sha1 <base64 digest>``; an unsupported algorithm is a 400."""
    algorithm, _, encoded = header.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise BadRequest(f"Unsupported checksum algorithm {algorithm[:32]!r}",
                         details={"field": "Upload-Checksum", "supported": sorted(CHECKSUM_ALGORITHMS)})
    digest = _b64(encoded.strip(), field="Upload-Checksum")
    if len(digest) != CHECKSUM_ALGORITHMS[algorithm]().digest_size:
        raise BadRequest(f"A {algorithm} digest has {CHECKSUM_ALGORITHMS[algorithm]().digest_size} bytes",
                         details={"field": "Upload-Checksum"})
    return Checksum(algorithm, digest)


def upload_meta(metadata: dict[str, str]) -> UploadMeta:
    """Check the metadata a creation needs (422 naming the key): movie_id and filename, optional
    kind (video | subtitle), filetype and language. The file's extension comes from a fixed list."""
    movie_id = metadata.get("movie_id")
    if movie_id is None:
        raise ValidationFailed("Upload-Metadata must name the movie: movie_id", details={"field": "movie_id"})
    if not (movie_id.isascii() and movie_id.isdigit() and 0 < len(movie_id) <= 18 and int(movie_id) > 0):
        raise ValidationFailed("movie_id must be a positive integer", details={"field": "movie_id"})
    filename = metadata.get("filename")
    if not filename:
        raise ValidationFailed("Upload-Metadata must carry the filename", details={"field": "filename"})
    if len(filename) > 255 or _CONTROL.search(filename):
        raise ValidationFailed("filename must be at most 255 printable characters", details={"field": "filename"})
    kind = metadata.get("kind", "video")
    if kind not in UPLOAD_EXTENSIONS:
        raise ValidationFailed("kind must be video or subtitle", details={"field": "kind", "allowed": list(UPLOAD_EXTENSIONS)})
    language = metadata.get("language") or None
    if language is not None and not (len(language) <= 16 and _LANGUAGE.match(language)):
        raise ValidationFailed("language must be a language tag such as en or pt-BR", details={"field": "language"})
    # Only the last path segment is kept, as a label: the name never becomes a path.
    label = PurePosixPath(filename.replace("\\", "/")).name[:100] or "upload"
    extension = PurePosixPath(label).suffix.lower()
    if extension not in UPLOAD_EXTENSIONS[kind]:
        extension = _EXTENSION_OF_TYPE.get((metadata.get("filetype") or "").split(";")[0].strip().lower(), "")
        if extension not in UPLOAD_EXTENSIONS[kind]:
            raise ValidationFailed(
                f"A {kind} upload must be one of {', '.join(UPLOAD_EXTENSIONS[kind])} (by filename or filetype)",
                details={"field": "filename", "allowed": list(UPLOAD_EXTENSIONS[kind])},
            )
    return UploadMeta(movie_id=int(movie_id), filename=filename, kind=kind, extension=extension,
                      content_type=CONTENT_TYPES[extension], language=language, label=label)


# -- files (blocking: called in a worker thread) ---------------------------------------------


def _create_part(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640))
    fsync_path(path.parent)


def _lock(path: Path) -> int | None:
    """The part file, open and exclusively locked; None when another writer holds it.
    FileNotFoundError when it is gone (the upload was terminated or finished meanwhile)."""
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _write_at(fd: int, offset: int, data: bytes) -> None:
    os.ftruncate(fd, offset)  # bytes past the durable offset are a dead writer's: drop them
    view, position = memoryview(data), offset
    while view:
        written = os.pwrite(fd, view, position)
        view, position = view[written:], position + written
    os.fsync(fd)


def _link(part: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        final.unlink()  # a link left by a completion that did not commit
    os.link(part, final)
    fsync_path(final.parent)


def _truncate_to(path: Path, offset: int) -> None:
    """Drop bytes past the durable offset, unless a writer holds the file (it will)."""
    try:
        fd = _lock(path)
    except FileNotFoundError:
        return
    if fd is not None:
        try:
            if os.fstat(fd).st_size > offset:
                os.ftruncate(fd, offset)
        finally:
            os.close(fd)


def _unlink(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class _Lost(Exception):
    """The compare-and-set found the row moved: roll the completion back."""


class UploadService:
    def __init__(
        self, *, engine: AsyncEngine, uploads: UploadRepository, api_keys: ApiKeyRepository, catalog: CatalogService,
        media_root: Path, max_bytes: int, expire_after: timedelta,
    ) -> None:
        self._engine = engine
        self._uploads = uploads
        self._api_keys = api_keys
        self._catalog = catalog
        self._root = media_root.resolve()
        self.max_bytes = max_bytes
        self._expire_after = expire_after

    # -- paths: built from ids and the fixed extension list only -------------------------

    def part_path(self, upload_id: str) -> Path:
        return self._root / "uploads" / f"{upload_id}.part"

    @staticmethod
    def final_relative_path(upload: Upload) -> str:
        extension = upload_meta(upload.metadata).extension
        return f"uploads/movies/{upload.movie_id}/{upload.id}{extension}"

    # -- the protocol ---------------------------------------------------------------------

    async def owner_of(self, principal: Principal) -> int:
        """The account an upload belongs to: the user, or the account that owns the API key."""
        if principal.kind == "user":
            return int(principal.subject)
        owner = await self._api_keys.owner_of(principal.subject)
        if owner is None:
            raise Forbidden("This API key belongs to no account: uploads need an owner")
        return owner

    async def create(self, *, owner_id: int, length: int, metadata: dict[str, str]) -> Upload:
        if length < 1:
            raise ValidationFailed("Upload-Length must be at least 1", details={"field": "Upload-Length"})
        if length > self.max_bytes:
            raise PayloadTooLarge(f"Upload-Length exceeds the maximum of {self.max_bytes} bytes",
                                  details={"field": "Upload-Length", "limit": self.max_bytes})
        meta = upload_meta(metadata)
        if not await self._uploads.movie_takes_uploads(meta.movie_id):
            raise ValidationFailed(f"Movie {meta.movie_id} does not exist", details={"field": "movie_id"})
        upload_id = secrets.token_hex(16)
        part = self.part_path(upload_id)
        await asyncio.to_thread(_create_part, part)
        try:
            await self._uploads.insert(
                upload_id=upload_id, owner_id=owner_id, movie_id=meta.movie_id, length=length, metadata=metadata,
                expires_at=utcnow() + self._expire_after,
            )
        except BaseException:
            await asyncio.to_thread(_unlink, part)
            raise
        return await self._owned(upload_id, owner_id)

    async def status(self, *, upload_id: str, owner_id: int) -> Upload:
        """The upload as HEAD reports it; bytes a crashed writer left past the offset are dropped."""
        upload = await self._owned(upload_id, owner_id)
        if upload.completed_at is None:
            await asyncio.to_thread(_truncate_to, self.part_path(upload.id), upload.offset_bytes)
        return upload

    async def append(
        self, *, upload_id: str, owner_id: int, offset: int, data: bytes, checksum: Checksum | None,
    ) -> Upload:
        """Write ``data`` at ``offset`` (which must be the upload's offset); the upload after it."""
        upload = self._check_append(await self._owned(upload_id, owner_id), offset, data)
        if not data:
            return upload
        if checksum is not None:
            # Off the event loop: hashing a 64 MiB chunk would stall every request of the worker.
            digest = await asyncio.to_thread(lambda: CHECKSUM_ALGORITHMS[checksum.algorithm](data).digest())
            if digest != checksum.digest:
                raise ChecksumMismatch(f"The chunk's {checksum.algorithm} is not the Upload-Checksum sent",
                                       details={"field": "Upload-Checksum", "offset": upload.offset_bytes})
        part = self.part_path(upload.id)
        try:
            fd = await asyncio.to_thread(_lock, part)
        except FileNotFoundError:
            raise NotFound("Upload not found", details={"id": upload_id}) from None
        if fd is None:
            raise Conflict("Another request is writing to this upload", details={"offset": upload.offset_bytes})
        try:
            # Read again under the lock: a writer that held it before us may have moved the offset.
            upload = self._check_append(await self._owned(upload_id, owner_id), offset, data)
            await asyncio.to_thread(_write_at, fd, offset, data)
            end = offset + len(data)
            if end == upload.length:
                return await self._complete(upload, part)
            if not await self._uploads.advance(upload.id, expected=offset, offset=end):
                raise await self._moved(upload_id, owner_id)
        finally:
            os.close(fd)  # releases the lock
        return msgspec.structs.replace(upload, offset_bytes=end)

    async def terminate(self, *, upload_id: str, owner_id: int) -> None:
        upload = await self._owned(upload_id, owner_id)
        if not await self._uploads.delete(upload.id, completed=upload.completed_at is not None):
            # It finished in between: its file is an asset's now; remove the row and part file only.
            upload = await self._owned(upload_id, owner_id)
            if not await self._uploads.delete(upload.id, completed=upload.completed_at is not None):
                raise NotFound("Upload not found", details={"id": upload_id})
        await asyncio.to_thread(_unlink, *self._files(upload))

    async def sweep(self) -> int:
        """Remove uploads past ``expires_at`` (rows and part files; assets made stay). Returns how many."""
        now, removed = utcnow(), 0
        for upload in await self._uploads.expired(now=now, limit=SWEEP_BATCH):
            # Files go only with the row as it was read: a completion committed since keeps its file.
            if await self._uploads.delete_expired(upload.id, now=now, completed=upload.completed_at is not None):
                removed += 1
                await asyncio.to_thread(_unlink, *self._files(upload))
        return removed

    # -- helpers ------------------------------------------------------------------------------

    async def _owned(self, upload_id: str, owner_id: int) -> Upload:
        """The caller's live upload; another's, an unknown one and an expired one are all 404."""
        upload = await self._uploads.get(upload_id) if _UPLOAD_ID.match(upload_id) else None
        if upload is None or upload.owner_id != owner_id:
            raise NotFound("Upload not found", details={"id": upload_id[:64]})
        if upload.expires_at <= utcnow():
            raise NotFound("Upload expired", details={"id": upload_id})
        return upload

    @staticmethod
    def _check_append(upload: Upload, offset: int, data: bytes) -> Upload:
        if offset != upload.offset_bytes:
            raise Conflict(f"Upload-Offset must be the upload's offset, {upload.offset_bytes}",
                           details={"field": "Upload-Offset", "offset": upload.offset_bytes})
        if len(data) > upload.length - offset:
            raise PayloadTooLarge(f"The chunk runs past Upload-Length ({upload.length})",
                                  details={"field": "body", "remaining": upload.length - offset})
        return upload

    async def _moved(self, upload_id: str, owner_id: int) -> Exception:
        current = await self._owned(upload_id, owner_id)  # NotFound if it was terminated or swept meanwhile
        return Conflict("Another request moved this upload's offset", details={"offset": current.offset_bytes})

    def _files(self, upload: Upload) -> tuple[Path, ...]:
        """Files of an upload to remove with it: the part file, and a final link that never committed."""
        part = self.part_path(upload.id)
        if upload.completed_at is not None:
            return (part,)
        try:
            return part, self._root / self.final_relative_path(upload)
        except ValidationFailed:
            return (part,)

    async def _complete(self, upload: Upload, part: Path) -> Upload:
        """The last chunk is durable: link the file to its final name, then asset + job + offset in one commit."""
        meta = upload_meta(upload.metadata)
        relative = self.final_relative_path(upload)
        final = self._root / relative
        await asyncio.to_thread(_link, part, final)
        try:
            async with self._engine.begin() as conn:
                asset_id = await MovieRepository.insert_asset(
                    conn, movie_id=upload.movie_id, kind=meta.kind, path=relative, content_type=meta.content_type,
                    size_bytes=upload.length, language=meta.language, label=meta.label, status="pending",
                )
                if not await UploadRepository.finish(conn, upload.id, expected=upload.offset_bytes,
                                                     length=upload.length, asset_id=asset_id):
                    raise _Lost
                await enqueue(conn, topic=media_probe.TOPIC, payload={"asset_id": asset_id})
        except _Lost:
            await asyncio.to_thread(_unlink, final)
            raise await self._moved(upload.id, upload.owner_id) from None
        await asyncio.to_thread(_unlink, part)
        try:
            await self._catalog.movies_changed(upload.movie_id)
        except Exception as exc:  # committed: the caches' own TTLs end stale answers
            log.warning("catalog invalidation failed after an upload", extra={"error": str(exc)[:200]})
        log.info("upload complete", extra={"upload_id": upload.id, "asset_id": asset_id})
        return msgspec.structs.replace(upload, offset_bytes=upload.length, completed_at=utcnow(), asset_id=asset_id)
