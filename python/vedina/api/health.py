"""Liveness, readiness and version: what load balancers and operators poll."""

from __future__ import annotations

from ipaddress import ip_address

from robyn import Headers, Response, Robyn

from vedina import __version__
from vedina.api.answers import Health, Readiness
from vedina.config import parse_networks
from vedina.errors import NotFound, ServiceUnavailable
from vedina.http.operation import doc
from vedina.http.responses import error_response, json_response
from vedina.metrics import exposition
from vedina.security.ratelimit.principal import request_client_address
from vedina.state import AppState


def register(app: Robyn, state: AppState) -> None:
    @app.get("/health", openapi_name="Liveness (no I/O)", openapi_tags=["operations"])
    @doc(public=True, answers={200: Health})
    def health(request):
        return json_response({"status": "ok", "version": __version__, "api_version": state.settings.api_version})

    allowed = parse_networks(state.settings.metrics_allowed_ips, var="METRICS_ALLOWED_IPS")

    @app.get("/metrics", openapi_name="Prometheus metrics of all workers (METRICS_ALLOWED_IPS only)",
             openapi_tags=["operations"])
    @doc(access="clients whose address is in METRICS_ALLOWED_IPS (others get 404, as if there were no route)",
         answers={200: "text/plain; version=0.0.4; charset=utf-8"}, errors=("404 not_found",))
    def metrics(request):
        client = request_client_address(request, state.proxies)
        if not client or not any(ip_address(client) in network for network in allowed):
            return error_response(NotFound(f"No route for GET {request.url.path}"))  # as if there were none
        state.recorder.flush(scraping=True)  # this worker's last second too
        body, content_type = exposition()
        return Response(200, Headers({"content-type": content_type}), body)

    drain_path = state.settings.drain_path

    @app.get("/ready", openapi_name="Readiness of database, cache and broker", openapi_tags=["operations"])
    @doc(public=True, answers={200: Readiness})
    async def ready(request):
        # `vedina drain` (or any tool) creates the file: load balancers polling /ready stop
        # sending before the instance restarts. Only /ready looks (one stat), in every worker.
        if drain_path.exists():
            return error_response(ServiceUnavailable(
                "Draining: this instance is about to restart", details={"draining": True}))
        checks = await state.services.resources.check()
        failed = sorted(name for name, result in checks.items() if result != "ok")
        if failed:
            return error_response(ServiceUnavailable(f"Not ready: {', '.join(failed)}", details=checks))
        return json_response({"status": "ready", "checks": checks, "profile": state.settings.storage_profile})
