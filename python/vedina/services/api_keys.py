"""API keys for external services: create (secret shown once), list, rotate, revoke; SigV4 authentication.

A key is an access key id (public, ``VDK...``) and a secret (shown once,
stored AES-256-GCM encrypted). Services sign requests with AWS SigV4 using
service name ``vedina``; :meth:`ApiKeyService.authenticate` checks the
signature with the Rust verifier, refuses a signature seen before (replay)
for unsafe methods, and for safe ones (GET, HEAD, OPTIONS) that sign an
``X-Vedina-Nonce`` header (``x-amz-date`` has one-second resolution, so
identical reads within a second are legitimate and a safe read has no effect
to repeat), and records the use in memory; :class:`UsageRecorder` writes last-used times
in one batch every few seconds instead of one UPDATE per request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from datetime import datetime

import msgspec

from vedina._native import SignatureError, parse_sigv4_authorization, verify_sigv4
from vedina.background import Background
from vedina.errors import NotFound, Unauthorized
from vedina.security.secretbox import SecretBox, SecretBoxError
from vedina.storage.api_keys import ApiKeyRepository
from vedina.storage.clock import utcnow
from vedina.storage.keyvalue import KeyValueStore

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A client that wants even its reads refused on repeat signs this header (a unique value per request).
NONCE_HEADER = "x-vedina-nonce"

ACCESS_KEY_PREFIX = "VDK"
MAX_SKEW_SECONDS = 300


class ApiKeyPublic(msgspec.Struct, kw_only=True):
    id: int
    access_key_id: str
    name: str
    scopes: list[str]
    owner_id: int | None
    created_at: datetime
    rotated_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic, kw_only=True):
    secret: str  # shown once: only its ciphertext is stored


class ApiKeyList(msgspec.Struct, kw_only=True):
    items: list[ApiKeyPublic]
    total: int
    offset: int
    limit: int


class ApiKeyCaller(msgspec.Struct, frozen=True, kw_only=True):
    key_id: int
    access_key_id: str
    scopes: tuple[str, ...]


def new_access_key_id() -> str:
    return ACCESS_KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode()  # 19 chars, A-Z2-7


def new_secret() -> str:
    return secrets.token_urlsafe(30)


class UsageRecorder:
    """Last-used times, collected in memory and written in one transaction per interval."""

    def __init__(self, repository: ApiKeyRepository, *, interval: float = 10.0) -> None:
        self._repository = repository
        self._interval = interval
        self._pending: dict[int, datetime] = {}
        self._task = Background("api key usage")

    def record(self, key_id: int) -> None:
        self._pending[key_id] = utcnow()

    async def flush(self) -> int:
        pending, self._pending = self._pending, {}
        try:
            await self._repository.record_last_used(pending)
        except Exception:
            for key_id, when in pending.items():  # keep them for the next round
                self._pending.setdefault(key_id, when)
            raise
        return len(pending)

    def start(self) -> None:
        self._task.start(self._loop)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing API key last-used times failed")

    async def close(self) -> None:
        await self._task.stop()
        with contextlib.suppress(Exception):
            await self.flush()


class ApiKeyService:
    def __init__(
        self, *, repository: ApiKeyRepository, secret_box: SecretBox, store: KeyValueStore, region: str,
        usage: UsageRecorder,
    ) -> None:
        self._keys = repository
        self._box = secret_box
        self._store = store
        self._region = region
        self.usage = usage

    async def create(self, *, name: str, scopes: list[str], owner_id: int) -> ApiKeyCreated:
        access_key_id, secret = new_access_key_id(), new_secret()
        key_id = await self._keys.insert(
            access_key_id=access_key_id, name=name, scopes=sorted(set(scopes)), owner_id=owner_id,
            secret_ciphertext=self._box.encrypt(secret.encode(), aad=access_key_id.encode()),
        )
        return ApiKeyCreated(**msgspec.structs.asdict(await self.get(key_id=key_id)), secret=secret)

    async def get(self, *, key_id: int) -> ApiKeyPublic:
        row = await self._keys.get(key_id)
        if row is None:
            raise NotFound("No such API key", details={"id": key_id})
        return msgspec.convert(row, ApiKeyPublic)

    async def list(self, *, offset: int, limit: int) -> ApiKeyList:
        rows, total = await self._keys.list(offset=offset, limit=limit)
        return ApiKeyList(items=[msgspec.convert(r, ApiKeyPublic) for r in rows], total=total, offset=offset, limit=limit)

    async def rotate(self, *, key_id: int) -> ApiKeyCreated:
        """A new secret for the same access key id; the old secret stops working at once."""
        key = await self.get(key_id=key_id)
        secret = new_secret()
        ciphertext = self._box.encrypt(secret.encode(), aad=key.access_key_id.encode())
        if not await self._keys.replace_secret(key_id, secret_ciphertext=ciphertext):
            raise NotFound("No such active API key", details={"id": key_id})
        return ApiKeyCreated(**msgspec.structs.asdict(await self.get(key_id=key_id)), secret=secret)

    async def revoke(self, *, key_id: int) -> ApiKeyPublic:
        if not await self._keys.revoke(key_id):
            raise NotFound("No such active API key", details={"id": key_id})
        return await self.get(key_id=key_id)

    async def authenticate(
        self, *, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes, authorization: str
    ) -> ApiKeyCaller:
        """Verify a SigV4-signed request; raises Unauthorized (never says which check failed beyond the kind)."""
        try:
            parsed = parse_sigv4_authorization(authorization)
        except SignatureError:
            raise Unauthorized("Malformed SigV4 Authorization header") from None
        row = await self._keys.get_for_signing(parsed.access_key_id)
        if row is None:
            raise Unauthorized("Invalid request signature")
        try:
            secret = self._box.decrypt(row["secret_ciphertext"], aad=parsed.access_key_id.encode()).decode()
            verify_sigv4(method, path, query, headers, body, secret, region=self._region, max_skew=MAX_SKEW_SECONDS)
        except (SignatureError, SecretBoxError) as exc:
            raise Unauthorized("Invalid request signature", details={"reason": type(exc).__name__}) from None
        # A signature is valid for ±MAX_SKEW seconds around its x-amz-date, so
        # it is remembered for the whole 2×MAX_SKEW window.
        if method not in SAFE_METHODS or NONCE_HEADER in parsed.signed_headers:
            if not await self._store.add(f"auth:sigv4:{parsed.signature}", b"1", ttl=2 * MAX_SKEW_SECONDS):
                raise Unauthorized("Replayed request signature")
        self.usage.record(row["id"])
        return ApiKeyCaller(key_id=row["id"], access_key_id=parsed.access_key_id, scopes=tuple(row["scopes"]))
