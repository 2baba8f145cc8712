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
from vedina.http.middleware import answered
from vedina.http.routes import RouteTable
from vedina.logs import AccessLog
from vedina.metrics import RequestRecorder, add_flush_hook, remove_flush_hook, resource_sampler

log = logging.getLogger(__name__)


class AppState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proxies = parse_trusted_proxies(settings.trusted_proxies)
        self.routes: RouteTable | None = None  # set once every route is added (vedina.app)
        self.recorder = RequestRecorder()  # request metrics, flushed once a second by each worker
        # One JSON line per answer (ACCESS_LOG), written by its own task every 0.1 s.
        self.access_log = AccessLog() if settings.access_log else None
        self.answered = answered(self.recorder, self.access_log)  # called once per answer
        self._flush_hooks: list = []
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("services are built by the startup handler of each worker")
        return self._services

    async def startup(self) -> None:
        self._services = await open_services(self.settings)
        self._services.start()
        self._flush_hooks = [resource_sampler(self._services.resources.engine, self._services.token_keys.verifier)]
        if self.access_log is not None:
            self.access_log.start()
        for hook in self._flush_hooks:
            add_flush_hook(hook)
        self.recorder.start()
        log.info("worker ready", extra={"profile": self.settings.storage_profile})

    async def shutdown(self) -> None:
        await self.recorder.close()
        if self.access_log is not None:
            await self.access_log.close()
        for hook in self._flush_hooks:
            remove_flush_hook(hook)
        if self._services is not None:
            await self._services.close()
            self._services = None
