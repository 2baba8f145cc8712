"""Per-process application state: settings, open resources, services.

Created when the app is built (in the parent process) and filled in by the
startup handler in each worker process, after the fork, so no connection is
ever shared between processes.
"""

from __future__ import annotations

import logging

from vedina.config import Settings, webhook_secret_map
from vedina.services.catalog import CatalogService
from vedina.services.identity import IdentityServices
from vedina.services.media import MediaService
from vedina.services.webhooks import WebhookService
from vedina.storage.resources import Resources, open_resources
from vedina.storage.webhooks import WebhookEventRepository

log = logging.getLogger(__name__)


class AppState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._resources: Resources | None = None
        self._catalog: CatalogService | None = None
        self._identity: IdentityServices | None = None
        self._media: MediaService | None = None
        self._webhooks: WebhookService | None = None

    @property
    def resources(self) -> Resources:
        if self._resources is None:
            raise RuntimeError("resources are opened by the startup handler")
        return self._resources

    @property
    def catalog(self) -> CatalogService:
        if self._catalog is None:
            raise RuntimeError("services are built by the startup handler")
        return self._catalog

    @property
    def media(self) -> MediaService:
        if self._media is None:
            raise RuntimeError("services are built by the startup handler")
        return self._media

    @property
    def webhooks(self) -> WebhookService:
        if self._webhooks is None:
            raise RuntimeError("services are built by the startup handler")
        return self._webhooks

    @property
    def identity(self) -> IdentityServices:
        if self._identity is None:
            raise RuntimeError("services are built by the startup handler")
        return self._identity

    async def startup(self) -> None:
        self._resources = await open_resources(self.settings)
        self._catalog = CatalogService(self._resources.movies)
        self._media = MediaService(self._resources.movies, media_root=self.settings.media_dir)
        self._webhooks = WebhookService(WebhookEventRepository(self._resources.engine), webhook_secret_map(self.settings))
        self._identity = IdentityServices.build(self.settings, self._resources)
        self._identity.start()
        self._resources.start_relay()
        log.info("worker ready", extra={"profile": self.settings.storage_profile})

    async def shutdown(self) -> None:
        if self._identity is not None:
            await self._identity.close()
            self._identity = None
        if self._resources is not None:
            await self._resources.close()
            self._resources = None
