"""Liveness, readiness and version: what load balancers and operators poll."""

from __future__ import annotations

from robyn import Headers, Response, Robyn

from vedina import __version__
from vedina.errors import ServiceUnavailable
from vedina.http.responses import error_response, json_response
from vedina.metrics import exposition
from vedina.state import AppState


def register(app: Robyn, state: AppState) -> None:
    @app.get("/health", openapi_name="Liveness (no I/O)", openapi_tags=["operations"])
    def health(request):
        return json_response({"status": "ok", "version": __version__, "api_version": state.settings.api_version})

    @app.get("/metrics", openapi_name="Prometheus metrics of all workers", openapi_tags=["operations"])
    def metrics(request):
        state.recorder.flush()  # this worker's last second too
        body, content_type = exposition()
        return Response(200, Headers({"content-type": content_type}), body)

    @app.get("/ready", openapi_name="Readiness of database, cache and broker", openapi_tags=["operations"])
    async def ready(request):
        checks = await state.services.resources.check()
        failed = sorted(name for name, result in checks.items() if result != "ok")
        if failed:
            return error_response(ServiceUnavailable(f"Not ready: {', '.join(failed)}", details=checks))
        return json_response({"status": "ready", "checks": checks, "profile": state.settings.storage_profile})
