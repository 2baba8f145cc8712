"""Full-text search terms, and the vocabulary behind the typo-tolerant fallback.

The ranked search itself is one query per database (MariaDB ``MATCH ...
AGAINST`` in boolean mode over a FULLTEXT index, SQLite FTS5 with ``bm25``;
both made by migration 0006). This module turns what a user typed into terms
both engines treat alike:

- words are split on anything that is not a letter or digit and lower-cased;
- InnoDB's default stopwords and words shorter than its minimum token size (3)
  are not required (InnoDB indexes none of them; FTS5 leaves them out too, so
  both profiles answer the same);
- the last word is a prefix while the user types ("matr" finds "Matrix").

Typos: when a search finds nothing, each word is looked up in the vocabulary of
titles and people's names by its trigrams (``$ma``, ``mat``, ``atr``, ...), the
candidates sharing most trigrams are ranked by edit distance, and the search is
run again with the closest word within :func:`max_typos` edits ("matirx" ->
"matrix"). The vocabulary only grows (a word that no longer occurs costs one
empty fallback query).
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import AsyncIterator, Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from vedina.storage.schema import search_trigrams

# InnoDB's default full-text stopword list (INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD).
STOPWORDS = frozenset(
    "a about an are as at be by com de en for from how i in is it la of on or that the this to was what when "
    "where who will with und www".split()
)
MIN_TERM = 3  # innodb_ft_min_token_size
MAX_WORD = 64  # search_trigrams.word
MAX_TERMS = 8
_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Lower case without accents ("Amélie" -> "amelie"), as both engines compare words."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    return [w[:MAX_WORD] for w in _WORD.findall(fold(text))]


def terms(query: str) -> list[str]:
    """The words of a query that full-text search can require (order kept, duplicates dropped)."""
    seen: dict[str, None] = {}
    for word in words(query):
        if len(word) >= MIN_TERM and word not in STOPWORDS:
            seen.setdefault(word, None)
    return list(seen)[:MAX_TERMS]


def prefix_last(query: str) -> bool:
    """Whether the last word is still being typed (no trailing space)."""
    return bool(query) and not query[-1].isspace()


def mariadb_expression(found: list[str], *, prefix: bool) -> str:
    """``+word1 +word2*`` for MATCH ... AGAINST (... IN BOOLEAN MODE): every word required."""
    parts = [f"+{w}" for w in found]
    if prefix and parts:
        parts[-1] += "*"
    return " ".join(parts)


def fts5_expression(found: list[str], *, prefix: bool) -> str:
    """``"word1" "word2"*`` for FTS5 MATCH (implicit AND; quoted, so no operator can be injected)."""
    parts = [f'"{w}"' for w in found]
    if prefix and parts:
        parts[-1] += "*"
    return " ".join(parts)


# -- bulk loads ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bulk_indexing(conn: AsyncConnection, *, first_id: int) -> AsyncIterator[None]:
    """Index movies inserted in the block (ids from ``first_id``) once, at the end.

    On SQLite the FTS5 insert trigger costs ~4x the row insert itself; for a bulk
    load it is set aside (its own SQL, read back from ``sqlite_master``) and the
    new rows are indexed in one statement. MariaDB's FULLTEXT index needs nothing.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    trigger = (await conn.execute(sa.text(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'movies_fts_insert'"))).scalar_one()
    await conn.execute(sa.text("DROP TRIGGER movies_fts_insert"))
    yield
    await conn.execute(sa.text(trigger))
    await conn.execute(sa.text(
        "INSERT INTO movies_fts(rowid, title, original_title, synopsis, people_text)"
        " SELECT id, title, original_title, synopsis, people_text FROM movies WHERE id >= :first_id"
    ), {"first_id": first_id})


# -- the vocabulary ---------------------------------------------------------------------


def trigrams(word: str) -> set[str]:
    padded = f"${word}$"
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def vocabulary_rows(texts: Iterable[str]) -> list[dict[str, str]]:
    """search_trigrams rows for every word (of MIN_TERM letters or more) in ``texts``."""
    found = {w for text in texts for w in words(text) if len(w) >= MIN_TERM and not w.isdigit()}
    return [{"trigram": t, "word": w} for w in found for t in trigrams(w)]


def insert_ignoring_duplicates(table: sa.Table) -> sa.Insert:
    return sa.insert(table).prefix_with("OR IGNORE", dialect="sqlite").prefix_with("IGNORE", dialect="mysql")


_ADD_WORDS = insert_ignoring_duplicates(search_trigrams)


async def add_to_vocabulary(conn: AsyncConnection, texts: Iterable[str]) -> None:
    rows = vocabulary_rows(texts)
    for start in range(0, len(rows), 5000):
        await conn.execute(_ADD_WORDS, rows[start : start + 5000])


def max_typos(word: str) -> int:
    return 1 if len(word) <= 5 else 2


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment): a swap of neighbours is one edit."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


async def correct(conn: AsyncConnection, word: str) -> str | None:
    """The vocabulary word closest to ``word`` within max_typos edits (None: the word is
    known, or nothing is close enough)."""
    grams = sorted(trigrams(word))
    shared = sa.func.count().label("shared")
    query = (
        sa.select(search_trigrams.c.word, shared)
        .where(search_trigrams.c.trigram.in_(grams))
        .group_by(search_trigrams.c.word)
        .order_by(shared.desc(), search_trigrams.c.word)
        .limit(50)
    )
    candidates = (await conn.execute(query)).all()
    if any(candidate == word for candidate, _ in candidates):
        return None
    best: tuple[int, int, str] | None = None
    for candidate, count in candidates:
        distance = edit_distance(word, candidate)
        if distance <= max_typos(word) and (best is None or (distance, -count, candidate) < best):
            best = (distance, -count, candidate)
    return None if best is None else best[2]
