"""Per-process application state: settings, the route table, and the services.

Created when the app is built (in the parent process); the services are built
by the startup handler in each worker process, after the fork, through the
composition root (:mod:`vedina.composition`), so no connection is ever shared
between processes. Reading them before startup is a programming error and
says so.
"""

from __future__ import annotations

import logging

from vedina.composition import Services, open_services
from vedina.config import Settings, parse_trusted_proxies
from vedina.http.routes import RouteTable
from vedina.metrics import RequestRecorder

log = logging.getLogger(__name__)


class AppState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proxies = parse_trusted_proxies(settings.trusted_proxies)
        self.routes: RouteTable | None = None  # set once every route is added (vedina.app)
        self.recorder = RequestRecorder()  # request metrics, flushed once a second by each worker
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("services are built by the startup handler of each worker")
        return self._services

    async def startup(self) -> None:
        self._services = await open_services(self.settings)
        self._services.start()
        self.recorder.start()
        log.info("worker ready", extra={"profile": self.settings.storage_profile})

    async def shutdown(self) -> None:
        await self.recorder.close()
        if self._services is not None:
            await self._services.close()
            self._services = None
