"""/docs and /openapi.json: the API described, with Swagger UI served from this server.

The document is :mod:`vedina.http.openapi`'s, built from the routes and the ``doc`` annotation
next to each (:mod:`vedina.http.operation`).

The Swagger UI assets come from the ``swagger-ui-bundle`` package and are
served under ``/docs/assets/``; the page loads nothing from elsewhere and runs
no inline script, so its Content-Security-Policy allows scripts from this
origin only (``SECURITY_HEADERS_DOCS``).
"""

from __future__ import annotations

from pathlib import Path

from robyn import Headers, Request, Response, Robyn
from swagger_ui_bundle import swagger_ui_path

from vedina import __version__
from vedina.errors import NotFound
from vedina.http import openapi
from vedina.http.responses import JSON, encode_json, error_response

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
    url: "/docs/assets/openapi-3.0.json",
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
UI_DOCUMENT = "openapi-3.0.json"  # changes with each release: revalidated, not cached for a day


def _load_assets() -> dict[str, tuple[bytes, str]]:
    assets = {name: ((ASSETS / name).read_bytes(), content_type) for name, content_type in ASSET_TYPES.items()}
    assets["init.js"] = (INIT_SCRIPT, "text/javascript; charset=utf-8")
    return assets


def register(app: Robyn) -> None:
    """Call once every documented route is added: the OpenAPI document is built from them
    (:mod:`vedina.http.openapi`), encoded once, in the parent process, before the workers fork."""
    spec = openapi.build(app.router.get_routes(), version=__version__)
    document = encode_json(spec)
    assets = _load_assets()
    # Swagger UI 4 (the vendored one) renders OpenAPI 3.0 only: it gets the same document in 3.0.
    assets[UI_DOCUMENT] = (encode_json(openapi.as_openapi_30(spec)), JSON)

    @app.get("/openapi.json", openapi_name="The OpenAPI document", include_in_schema=False)
    def openapi_document(request: Request):
        return Response(200, Headers({"content-type": JSON, "cache-control": "no-cache"}), document)

    @app.get("/docs", openapi_name="Swagger UI", include_in_schema=False)
    def docs_page(request: Request):
        return Response(200, Headers({"content-type": "text/html; charset=utf-8", "cache-control": "no-cache"}), PAGE)

    @app.get("/docs/assets/:name", openapi_name="Swagger UI assets", include_in_schema=False)
    def docs_asset(request: Request):
        found = assets.get(request.path_params.get("name", ""))
        if found is None:
            return error_response(NotFound(f"No route for GET {request.url.path}"))
        body, content_type = found
        cache = "no-cache" if request.path_params.get("name") == UI_DOCUMENT else ASSET_CACHE
        return Response(200, Headers({"content-type": content_type, "cache-control": cache}), body)
