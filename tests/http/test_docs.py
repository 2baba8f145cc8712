"""/docs serves Swagger UI from this server only: no CDN, no inline script, a strict CSP (issue 8, item 7)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import SERVERS


@pytest.fixture(params=SERVERS)
def http(request, live_servers):
    with httpx.Client(base_url=live_servers(request.param, "embedded").base_url, timeout=10) as client:
        yield client


def test_docs_page_loads_only_its_own_assets_under_a_strict_policy(http):
    page = http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-inline' https" not in policy
    assert "https:" not in policy and "unpkg" not in policy
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/docs/assets/") for source in sources), sources
    assert not re.search(r"<script>(?!</script>)", page.text), "no inline script"
    for source in sources:
        asset = http.get(source)
        assert asset.status_code == 200 and len(asset.content) > 100, source
        assert asset.headers["cache-control"] == "public, max-age=86400"
    assert http.get("/docs/assets/init.js").headers["content-type"].startswith("text/javascript")


def test_openapi_document_lists_the_api(http):
    spec = http.get("/openapi.json").json()
    assert "/api/movies/{id}" in spec["paths"] and "/api/auth/login" in spec["paths"]
    assert "/docs/assets/{name}" not in spec["paths"]


@pytest.mark.parametrize("name", ["../../etc/passwd", "index.html", "swagger-ui.js.map", "%2e%2e%2fapp.py"])
def test_other_asset_names_are_404(http, name):
    response = http.get(f"/docs/assets/{name}")
    assert response.status_code == 404
