"""Per-process application state: settings, open resources, services.

Created when the app is built (in the parent process) and filled in by the
startup handler in each worker process, after the fork, so no connection is
ever shared between processes.
"""

from __future__ import annotations

import logging

from vedina.config import Settings
from vedina.services.catalog import CatalogService
from vedina.storage.resources import Resources, open_resources

log = logging.getLogger(__name__)


class AppState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._resources: Resources | None = None
        self._catalog: CatalogService | None = None

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

    async def startup(self) -> None:
        self._resources = await open_resources(self.settings)
        self._catalog = CatalogService(self._resources.movies)
        self._resources.start_relay()
        log.info("worker ready", extra={"profile": self.settings.storage_profile})

    async def shutdown(self) -> None:
        if self._resources is not None:
            await self._resources.close()
            self._resources = None
