"""The main catalog queries use their indexes on both databases (no scan of the movies table,
no sort of every match): the plans docs/catalog-queries.md shows at 100k movies."""

from __future__ import annotations

import pytest

from vedina.demo.catalog import generate_catalog
from vedina.storage import search
from vedina.storage.catalog_queries import CatalogQueries, Filters, Keyset, list_statement, search_statement
from vedina.storage.clock import utcnow


@pytest.fixture
async def queries(resources):
    await generate_catalog(resources.engine, count=1500, seed=3, clips=[])
    return CatalogQueries(resources.engine)


def uses_sort_index(plan: list[str], sort: str) -> bool:
    return any(f"ix_movies_status_{sort}" in step for step in plan)


def scans_movies(plan: list[str]) -> bool:
    return any(step.split()[:2] == ["SCAN", "movies"] or (step.startswith("movies:") and "type=ALL" in step)
               for step in plan)


def sorts_matches(plan: list[str]) -> bool:
    return any("TEMP B-TREE FOR ORDER BY" in step or "filesort" in step for step in plan)


@pytest.mark.parametrize(("sort", "index"), [("newest", "newest"), ("title", "title"), ("popularity", "popularity"),
                                             ("rating", "rating")])
@pytest.mark.parametrize("filters", [{}, {"genre_id": 1}, {"language": "fr"}, {"ratings": ("G", "PG")}],
                         ids=["all", "genre", "language", "ratings"])
async def test_listing_walks_the_sort_index(queries, sort, index, filters):
    for after in (None, Keyset(value=1 if sort in ("popularity", "rating") else "m" if sort == "title" else utcnow(),
                               id=100)):
        plan = await queries.explain(list_statement(Filters(window_at=utcnow(), **filters), sort=sort, after=after,
                                                    limit=21))
        assert uses_sort_index(plan, index), plan
        assert not scans_movies(plan) and not sorts_matches(plan), plan


async def test_a_person_filter_starts_from_their_credits(queries):
    plan = await queries.explain(list_statement(Filters(window_at=utcnow(), person_id=7), sort="newest", after=None,
                                                limit=21))
    assert any("ix_credits_person_movie" in step for step in plan), plan
    assert not scans_movies(plan), plan


async def test_search_uses_the_full_text_index(queries):
    terms = ["silent", "harbor"]
    expression = (search.fts5_expression(terms, prefix=True) if queries.dialect == "sqlite"
                  else search.mariadb_expression(terms, prefix=True))
    plan = await queries.explain(search_statement(queries.dialect, expression, Filters(window_at=utcnow()), offset=0,
                                                  limit=21))
    assert any("movies_fts VIRTUAL TABLE" in step or "type=fulltext" in step for step in plan), plan
    assert not scans_movies(plan), plan
