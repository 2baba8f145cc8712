"""/api/sitemap.xml: published blog posts and movies for search engines (ETag and 304).

With more URLs than ``SITEMAP_PAGE_URLS`` it is a sitemap index naming
``/api/sitemaps/<n>.xml`` (see :mod:`vedina.services.sitemap`).
"""

from __future__ import annotations

import re

from robyn import Request, SubRouter

from vedina.errors import NotFound
from vedina.http.operation import doc
from vedina.http.responses import document_response
from vedina.state import AppState

XML = "application/xml; charset=utf-8"
_PAGE = re.compile(r"([1-9][0-9]{0,5})\.xml")


def register(router: SubRouter, state: AppState) -> None:
    @router.get("/sitemap.xml", openapi_name="Sitemap (or sitemap index) of published posts and movies")
    @doc(public=True, headers=("If-None-Match",), answers={200: XML, 304: None})
    async def sitemap(request: Request):
        return document_response(request, await state.services.sitemap.root(), content_type=XML)

    @router.get("/sitemaps/:page", openapi_name="One sitemap of the index (/api/sitemaps/1.xml, ...)")
    @doc(public=True, headers=("If-None-Match",), answers={200: XML, 304: None})
    async def sitemap_page(request: Request):
        match = _PAGE.fullmatch(request.path_params.get("page", ""))
        if match is None:
            raise NotFound("No such sitemap", details={"field": "page"})
        return document_response(request, await state.services.sitemap.page(int(match.group(1))), content_type=XML)
