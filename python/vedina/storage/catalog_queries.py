"""Listing and searching movies: filters, sort orders, keyset pages, ranked full-text.

Every viewer query starts with ``status = 'published'`` and walks one of the
``ix_movies_status_*`` indexes (``status, <sort column>, id``), so a page
reads about as many rows as it returns whatever the catalog's size: the
position after the last row (the keyset, ``(value, id)``) is a range bound,
not an offset to skip. Filters that the index does not hold (genre, language,
person, years, parental limit, availability window) are checked on the rows
the walk reaches; genre, language and person through their own indexes.

Search ranks by relevance instead (MariaDB FULLTEXT, SQLite FTS5): the
full-text index yields the matching ids, the same filters apply, and pages are
offsets into the ranking (bounded: search is for finding, not for paging
through the catalog).

``EXPLAIN`` of these queries at 100k movies is in docs/catalog-queries.md and
checked by tests/catalog/test_query_plans.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.storage import search
from vedina.storage.movies import MOVIE_COLUMNS
from vedina.storage.reading import read
from vedina.storage.rows import all_rows
from vedina.storage.schema import credits, movie_genres, movie_languages, movies

if TYPE_CHECKING:
    from vedina.storage.replicas import Reader


# Sort name -> (column, descending). Ties are broken by id in the same direction.
SORTS: dict[str, tuple[sa.Column, bool]] = {
    "newest": (movies.c.published_at, True),
    "title": (movies.c.sort_title, False),
    "popularity": (movies.c.popularity, True),
    "rating": (movies.c.rating_avg, True),
}
SORT_INDEXES = {
    "newest": "ix_movies_status_newest", "title": "ix_movies_status_title",
    "popularity": "ix_movies_status_popularity", "rating": "ix_movies_status_rating",
}
MAX_SEARCH_OFFSET = 200


@dataclass(frozen=True, slots=True)
class Filters:
    genre_id: int | None = None
    year_from: int | None = None
    year_to: int | None = None
    language: str | None = None  # spoken or subtitle
    ratings: tuple[str, ...] | None = None  # allowed age ratings (the filter and the parental limit combined)
    person_id: int | None = None
    statuses: tuple[str, ...] = ("published",)
    window_at: datetime | None = None  # only movies inside their availability window at this time


@dataclass(frozen=True, slots=True)
class Keyset:
    """The last row of the previous page, in the sort's terms."""

    value: Any
    id: int


@dataclass(slots=True)
class Page:
    rows: list[dict[str, Any]]
    next_keyset: Keyset | None = None
    next_offset: int | None = None
    corrected: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _has(*conditions: Any) -> Any:
    """A row of the filter table exists for this movie, looked up by its primary key per movie.

    Written as a scalar subquery, not EXISTS: MariaDB turns EXISTS into a semi-join that
    first collects every movie of the genre (10% of the catalog) for each page.
    """
    return sa.select(sa.literal(1)).where(*conditions).limit(1).scalar_subquery().is_not(None)


def _conditions(filters: Filters) -> list[Any]:
    where: list[Any] = [movies.c.status.in_(filters.statuses) if len(filters.statuses) > 1
                        else movies.c.status == filters.statuses[0]]
    if filters.window_at is not None:
        now = filters.window_at
        where.append(sa.or_(movies.c.available_from.is_(None), movies.c.available_from <= now))
        where.append(sa.or_(movies.c.available_until.is_(None), movies.c.available_until > now))
    if filters.year_from is not None:
        where.append(movies.c.release_year >= filters.year_from)
    if filters.year_to is not None:
        where.append(movies.c.release_year <= filters.year_to)
    if filters.ratings is not None:
        where.append(movies.c.maturity_rating.in_(filters.ratings))
    if filters.genre_id is not None:
        where.append(_has(movie_genres.c.movie_id == movies.c.id, movie_genres.c.genre_id == filters.genre_id))
    if filters.language is not None:
        where.append(_has(movie_languages.c.movie_id == movies.c.id, movie_languages.c.language == filters.language))
    if filters.person_id is not None:
        where.append(movies.c.id.in_(sa.select(credits.c.movie_id).where(credits.c.person_id == filters.person_id)))
    return where


def list_statement(filters: Filters, *, sort: str, after: Keyset | None, limit: int) -> sa.Select:
    column, descending = SORTS[sort]
    where = _conditions(filters)
    if after is not None:
        beyond = (column < after.value) if descending else (column > after.value)
        tie = (movies.c.id < after.id) if descending else (movies.c.id > after.id)
        where.append(sa.or_(beyond, sa.and_(column == after.value, tie)))
    order = (column.desc(), movies.c.id.desc()) if descending else (column.asc(), movies.c.id.asc())
    statement = sa.select(*MOVIE_COLUMNS).where(*where).order_by(*order).limit(limit)
    if filters.person_id is None:
        # MariaDB would drive a genre or language filter from its table and sort every match
        # (a filesort of 10% of the catalog per page); walking the sort's index and checking each
        # row stops after a page. A person's few movies are better found first (the default).
        statement = statement.with_hint(movies, f"FORCE INDEX ({SORT_INDEXES[sort]})", dialect_name="mysql")
        statement = statement.prefix_with("STRAIGHT_JOIN", dialect="mysql")  # movies first, the filter tables after
    return statement


def admin_statement(filters: Filters, *, offset: int, limit: int) -> sa.Select:
    """Editors' lists (drafts, deleted): newest first by id, offset pages."""
    return sa.select(*MOVIE_COLUMNS).where(*_conditions(filters)).order_by(movies.c.id.desc()).offset(offset).limit(limit)


_FTS_COLUMNS = "movies.title, movies.original_title, movies.synopsis, movies.people_text"


def search_statement(dialect: str, expression: str, filters: Filters, *, offset: int, limit: int) -> sa.Select:
    where = _conditions(filters)
    if dialect == "sqlite":
        fts = sa.table("movies_fts", sa.column("rowid"), sa.column("rank"))
        return (
            sa.select(*MOVIE_COLUMNS)
            .join(fts, fts.c.rowid == movies.c.id)
            .where(sa.text("movies_fts MATCH :fts_query").bindparams(fts_query=expression), *where)
            .order_by(fts.c.rank, movies.c.id.desc())  # bm25: lower is better
            .offset(offset).limit(limit)
        )
    relevance = sa.text(f"MATCH ({_FTS_COLUMNS}) AGAINST (:fts_rank IN BOOLEAN MODE) DESC").bindparams(
        fts_rank=expression
    )
    return (
        sa.select(*MOVIE_COLUMNS)
        .where(sa.text(f"MATCH ({_FTS_COLUMNS}) AGAINST (:fts_match IN BOOLEAN MODE)").bindparams(fts_match=expression),
               *where)
        .order_by(relevance, movies.c.id.desc())
        .offset(offset).limit(limit)
    )


class CatalogQueries:
    def __init__(self, engine: AsyncEngine, *, reader: Reader | None = None) -> None:
        self._engine = engine  # explain(): the primary's plans
        self._reader = engine if reader is None else reader  # every listing and search (ADR 0017)
        self.dialect = engine.dialect.name

    async def list(self, filters: Filters, *, sort: str, after: Keyset | None, limit: int) -> Page:
        statement = list_statement(filters, sort=sort, after=after, limit=limit + 1)
        rows = await read(self._reader, lambda conn: all_rows(conn, statement))
        page = Page(rows=rows[:limit])
        if len(rows) > limit:
            last = page.rows[-1]
            page.next_keyset = Keyset(value=last[SORTS[sort][0].name], id=last["id"])
        return page

    async def admin_list(self, filters: Filters, *, offset: int, limit: int) -> Page:
        rows = await read(self._reader, lambda conn: all_rows(conn, admin_statement(filters, offset=offset,
                                                                                    limit=limit + 1)))
        return Page(rows=rows[:limit], next_offset=offset + limit if len(rows) > limit else None)

    async def search(self, expression: str, filters: Filters, *, offset: int, limit: int) -> Page:
        if offset >= MAX_SEARCH_OFFSET:
            return Page(rows=[])
        statement = search_statement(self.dialect, expression, filters, offset=offset, limit=limit + 1)
        rows = await read(self._reader, lambda conn: all_rows(conn, statement))
        more = len(rows) > limit and offset + limit < MAX_SEARCH_OFFSET
        return Page(rows=rows[:limit], next_offset=offset + limit if more else None)

    async def explain(self, statement: sa.Select) -> list[str]:
        """The database's plan for ``statement``, a line per step (for tests and docs/catalog-queries.md)."""
        compiled = statement.compile(dialect=self._engine.dialect, compile_kwargs={"literal_binds": True})
        async with self._engine.connect() as conn:
            if self.dialect == "sqlite":
                result = await conn.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}"))
                return [row.detail for row in result]
            result = (await conn.execute(sa.text(f"EXPLAIN {compiled}"))).mappings().all()
            return [f"{r['table']}: type={r['type']} key={r['key']} rows={r['rows']} {r['Extra'] or ''}".strip()
                    for r in result]

    async def correct(self, word: str) -> str | None:
        return await read(self._reader, lambda conn: search.correct(conn, word))
