"""Per-process application state: settings, open resources, services.

Created when the app is built (in the parent process) and filled in by the
startup handler in each worker process, after the fork, so no connection is
ever shared between processes. Reading a service before startup is a
programming error and says so.
"""

from __future__ import annotations

import logging
from typing import Any, Generic, TypeVar

from vedina.config import Settings, webhook_secret_map
from vedina.services.catalog import CatalogService
from vedina.services.identity import IdentityServices
from vedina.services.media import MediaService
from vedina.services.webhooks import WebhookService
from vedina.storage.resources import Resources, open_resources
from vedina.storage.webhooks import WebhookEventRepository

log = logging.getLogger(__name__)

T = TypeVar("T")


class _StartedOnly(Generic[T]):
    """An attribute that exists once the startup handler has set it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}"

    def __get__(self, instance: Any, owner: type) -> T:
        value = instance.__dict__.get(self._slot)
        if value is None:
            raise RuntimeError(f"{self._slot[1:]} is built by the startup handler of each worker")
        return value

    def __set__(self, instance: Any, value: T | None) -> None:
        instance.__dict__[self._slot] = value


class AppState:
    resources: _StartedOnly[Resources] = _StartedOnly()
    catalog: _StartedOnly[CatalogService] = _StartedOnly()
    media: _StartedOnly[MediaService] = _StartedOnly()
    webhooks: _StartedOnly[WebhookService] = _StartedOnly()
    identity: _StartedOnly[IdentityServices] = _StartedOnly()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def startup(self) -> None:
        resources = self.resources = await open_resources(self.settings)
        self.catalog = CatalogService(resources.movies)
        self.media = MediaService(resources.movies, media_root=self.settings.media_dir)
        self.webhooks = WebhookService(WebhookEventRepository(resources.engine), webhook_secret_map(self.settings))
        self.identity = IdentityServices.build(self.settings, resources)
        self.identity.start()
        resources.start_relay()
        log.info("worker ready", extra={"profile": self.settings.storage_profile})

    async def shutdown(self) -> None:
        if self.__dict__.get("_identity") is not None:
            await self.identity.close()
            self.identity = None
        if self.__dict__.get("_resources") is not None:
            await self.resources.close()
            self.resources = None
