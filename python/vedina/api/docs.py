"""/docs and /openapi.json: the API described, with Swagger UI served from this server.

The Swagger UI assets come from the ``swagger-ui-bundle`` package and are
served under ``/docs/assets/``; the page loads nothing from elsewhere and runs
no inline script, so its Content-Security-Policy allows scripts from this
origin only (``SECURITY_HEADERS_DOCS``).
"""

from __future__ import annotations

from pathlib import Path

from robyn import Headers, Request, Response, Robyn
from swagger_ui_bundle import swagger_ui_path

from vedina.errors import NotFound
from vedina.http.responses import error_response

ASSETS = Path(swagger_ui_path)
# name -> content type: the only files served (no path from the request reaches the filesystem).
ASSET_TYPES = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
INIT_SCRIPT = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
  });
});
"""
PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Vedina API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
  <script src="/docs/assets/init.js"></script>
</body>
</html>
"""
ASSET_CACHE = "public, max-age=86400"


def _load_assets() -> dict[str, tuple[bytes, str]]:
    assets = {name: ((ASSETS / name).read_bytes(), content_type) for name, content_type in ASSET_TYPES.items()}
    assets["init.js"] = (INIT_SCRIPT, "text/javascript; charset=utf-8")
    return assets


def register(app: Robyn) -> None:
    """Call once every documented route is added: the OpenAPI document is built from them."""
    app.router.prepare_routes_openapi(app.openapi, app.included_routers)
    app.openapi.prune_empty_components()
    spec = app.openapi.get_openapi_config
    assets = _load_assets()  # read once, in the parent process, before the workers fork

    @app.get("/openapi.json", openapi_name="The OpenAPI document", include_in_schema=False)
    def openapi_document(request: Request):
        return spec()

    @app.get("/docs", openapi_name="Swagger UI", include_in_schema=False)
    def docs_page(request: Request):
        return Response(200, Headers({"content-type": "text/html; charset=utf-8", "cache-control": "no-cache"}), PAGE)

    @app.get("/docs/assets/:name", openapi_name="Swagger UI assets", include_in_schema=False)
    def docs_asset(request: Request):
        found = assets.get(request.path_params.get("name", ""))
        if found is None:
            return error_response(NotFound(f"No route for GET {request.url.path}"))
        body, content_type = found
        return Response(200, Headers({"content-type": content_type, "cache-control": ASSET_CACHE}), body)
