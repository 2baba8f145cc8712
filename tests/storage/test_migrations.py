"""The migrated database has exactly the tables and columns of vedina.storage.schema."""

from __future__ import annotations

import sqlalchemy as sa

from vedina.storage.schema import metadata


async def test_migrations_create_the_schema(resources):
    def inspect_schema(sync_conn):
        inspector = sa.inspect(sync_conn)
        return {table: {c["name"] for c in inspector.get_columns(table)} for table in inspector.get_table_names()}

    async with resources.engine.connect() as conn:
        migrated = await conn.run_sync(inspect_schema)
    for table in metadata.sorted_tables:
        assert table.name in migrated, table.name
        assert migrated[table.name] == {c.name for c in table.columns}, table.name


async def test_movie_repository_round_trip(resources):
    from vedina.storage.movies import MovieRepository

    async with resources.engine.begin() as conn:
        movie_id = await MovieRepository.insert(
            conn, slug="o-brien", title="O'Brien; DROP TABLE movies", synopsis="<b>bold</b>",
            release_year=2001, maturity_rating="PG", genres=["drama"],
        )
        await MovieRepository.insert_asset(conn, movie_id=movie_id, kind="video", path="a.mp4", content_type="video/mp4")
    movie = await MovieRepository(resources.engine).get(movie_id)
    assert movie["title"] == "O'Brien; DROP TABLE movies"
    assert movie["synopsis"] == "<b>bold</b>"
    assert movie["genres"] == ["drama"]
    assert [a["path"] for a in movie["assets"]] == ["a.mp4"]
    rows, total = await MovieRepository(resources.engine).list(offset=0, limit=10)
    assert total == 1 and rows[0]["slug"] == "o-brien"


async def test_identifiers_compare_exactly_on_every_database(resources):
    """'EvtCase' and 'evtcase' are two keys in the database on MariaDB as on SQLite (no case/accent folding)."""
    from vedina.storage.keyvalue import SqlStore

    store = SqlStore(resources.engine)  # the database table itself, on both profiles
    await store.set("kv:EvtCase", b"upper")
    await store.set("kv:evtcase", b"lower")
    await store.set("kv:jos\u00e9", b"accent")
    assert await store.get("kv:EvtCase") == b"upper"
    assert await store.get("kv:evtcase") == b"lower"
    assert await store.get("kv:jose") is None
