"""The migrated database is exactly vedina.storage.schema (Alembic's own comparison:
tables, columns, types, indexes, constraints), and new revisions are generated from it."""

from __future__ import annotations

import sqlalchemy as sa

from vedina.storage import migrate
from vedina.storage.schema import metadata


async def test_migrated_database_matches_the_schema_without_drift(settings):
    assert await migrate.pending(settings) == []
    assert await migrate.drift(settings) == []


async def test_drift_is_reported(settings, resources):
    async with resources.engine.begin() as conn:
        await conn.execute(sa.text("CREATE INDEX ix_drift_test ON movies (title)"))
    try:
        differences = await migrate.drift(settings)
        assert len(differences) == 1 and "remove_index" in differences[0] and "ix_drift_test" in differences[0]
    finally:
        async with resources.engine.begin() as conn:
            await conn.execute(sa.text("DROP INDEX ix_drift_test" + (" ON movies" if settings.db_host else "")))


async def test_a_new_table_in_the_schema_becomes_a_generated_revision(settings, tmp_path):
    added = sa.Table("autogen_probe", metadata, sa.Column("id", sa.BigInteger, primary_key=True),
                     sa.Column("name", sa.String(40), nullable=False, index=True))
    try:
        path = await migrate.autogenerate(settings, "autogen probe", directory=tmp_path)
    finally:
        metadata.remove(added)
    text = open(path).read()
    assert "op.create_table('autogen_probe'" in text or 'op.create_table("autogen_probe"' in text
    assert "ix_autogen_probe_name" in text
    head = migrate.ScriptDirectory.from_config(migrate._alembic_config()).get_current_head()
    assert f"down_revision = {head!r}" in text or f"down_revision: Union[str, None] = {head!r}" in text


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
    from vedina.storage.catalog_queries import CatalogQueries, Filters

    page = await CatalogQueries(resources.engine).admin_list(Filters(statuses=("draft",)), offset=0, limit=10)
    assert [row["slug"] for row in page.rows] == ["o-brien"]


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
