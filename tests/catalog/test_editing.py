"""Editing the catalog over HTTP on both profiles: movies with If-Match, publishing, visibility,
genres, people and credits, and bad input (4xx naming the field, nothing written)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from vedina.storage.schema import credits, movie_genres, movie_languages, movies


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_a_new_movie_is_a_draft_only_editors_see(site):
    movie_id, version = site.movie(title="Draft Only")
    assert version == 1
    assert site.anonymous.get(f"/api/movies/{movie_id}").status_code == 404
    assert site.viewer.get(f"/api/movies/{movie_id}").status_code == 404
    seen = site.editor.get(f"/api/movies/{movie_id}")
    assert seen.status_code == 200 and seen.json()["status"] == "draft"
    assert seen.headers["etag"].startswith('"1.')


def test_publish_makes_it_visible_and_unpublish_hides_it_again(site):
    movie_id, version = site.movie(title="Now You See It")
    published = site.editor.post(f"/api/movies/{movie_id}/publish", headers={"if-match": f'"{version}"'})
    assert published.status_code == 200 and published.json()["version"] == 2
    body = site.anonymous.get(f"/api/movies/{movie_id}").json()
    assert body["status"] == "published" and body["published_at"]
    assert movie_id in {m["id"] for m in site.anonymous.get("/api/movies", params={"limit": 100}).json()["items"]}
    assert site.editor.post(f"/api/movies/{movie_id}/unpublish").status_code == 200
    assert site.viewer.get(f"/api/movies/{movie_id}").status_code == 404, "caches dropped at once"


def test_patch_with_a_stale_version_is_412_and_changes_nothing(site):
    movie_id, version = site.movie(title="Contested")
    etag = site.editor.get(f"/api/movies/{movie_id}").headers["etag"]
    first = site.editor.patch(f"/api/movies/{movie_id}", json={"title": "Editor One"}, headers={"if-match": etag})
    assert first.status_code == 200 and first.json()["version"] == version + 1
    second = site.editor.patch(f"/api/movies/{movie_id}", json={"title": "Editor Two"}, headers={"if-match": etag})
    error = error_of(second, 412)
    assert error["code"] == "precondition_failed" and error["details"]["version"] == version + 1
    assert site.editor.get(f"/api/movies/{movie_id}").json()["title"] == "Editor One"


def test_patch_without_if_match_is_428(site):
    movie_id, _ = site.movie()
    error = error_of(site.editor.patch(f"/api/movies/{movie_id}", json={"title": "x"}), 428)
    assert error["code"] == "precondition_required" and error["details"]["field"] == "If-Match"


@pytest.mark.parametrize("if_match", ["nope", '"abc"', "1, 2", "W/"])
def test_a_malformed_if_match_is_422(site, if_match):
    movie_id, _ = site.movie()
    response = site.editor.patch(f"/api/movies/{movie_id}", json={"title": "x"}, headers={"if-match": if_match})
    assert error_of(response, 422)["details"]["field"] == "If-Match"


def test_concurrent_edits_from_one_version_exactly_one_wins(site):
    from concurrent.futures import ThreadPoolExecutor

    movie_id, version = site.movie()

    def edit(n: int) -> int:
        return site.editor.patch(f"/api/movies/{movie_id}", json={"synopsis": f"edit {n}"},
                                 headers={"if-match": f'"{version}"'}).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(edit, range(6)))
    assert statuses == [200] + [412] * 5


def test_patch_changes_parts_and_keeps_the_rest(site):
    site.editor.post("/api/genres", json={"slug": "noir", "name": "Film Noir"})
    person = site.editor.post("/api/people", json={"name": "Ingrid Okafor"}).json()["id"]
    movie_id, version = site.movie(title="Parts", release_year=1999, genres=["noir"], spoken_languages=["en", "fr"],
                                   cast=[{"person_id": person, "role": "Detective"}])
    patched = site.editor.patch(f"/api/movies/{movie_id}", json={"subtitle_languages": ["de"], "runtime_minutes": 101},
                                headers={"if-match": f'"{version}"'})
    assert patched.status_code == 200, patched.text
    body = site.editor.get(f"/api/movies/{movie_id}").json()
    assert body["release_year"] == 1999 and body["runtime_minutes"] == 101
    assert body["genres"] == ["noir"] and body["spoken_languages"] == ["en", "fr"] and body["subtitle_languages"] == ["de"]
    assert body["cast"] == [{"person_id": person, "name": "Ingrid Okafor", "role": "Detective", "position": 0}]
    languages = site.query(sa.select(movie_languages.c.kind, movie_languages.c.language)
                           .where(movie_languages.c.movie_id == movie_id))
    assert sorted((r["kind"], r["language"]) for r in languages) == [("spoken", "en"), ("spoken", "fr"), ("subtitle", "de")]


def test_deleted_movies_are_gone_for_everyone(site):
    movie_id = site.published(title="Soon Gone")
    assert site.editor.delete(f"/api/movies/{movie_id}").status_code == 204
    for client in (site.anonymous, site.viewer, site.editor):
        assert client.get(f"/api/movies/{movie_id}").status_code == 404
    assert site.editor.patch(f"/api/movies/{movie_id}", json={"title": "x"}, headers={"if-match": "*"}).status_code == 404
    assert site.query(sa.select(movies.c.status).where(movies.c.id == movie_id)) == [{"status": "deleted"}]


def test_movies_outside_their_window_are_hidden_from_viewers(site):
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    ended = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    coming = site.published(title="Coming Soon", available_from=later)
    gone = site.published(title="Gone Already", available_until=ended)
    for movie_id in (coming, gone):
        assert site.viewer.get(f"/api/movies/{movie_id}").status_code == 404
        assert site.editor.get(f"/api/movies/{movie_id}").status_code == 200
    listed = {m["id"] for m in site.viewer.get("/api/movies", params={"limit": 100}).json()["items"]}
    assert coming not in listed and gone not in listed


def test_viewers_cannot_write(site):
    movie_id, _ = site.movie()
    assert error_of(site.viewer.post("/api/movies", json={"title": "Nope"}), 403)["code"] == "forbidden"
    assert site.viewer.patch(f"/api/movies/{movie_id}", json={"title": "x"}, headers={"if-match": "*"}).status_code == 403
    assert site.viewer.post("/api/genres", json={"slug": "x", "name": "X"}).status_code == 403
    assert site.anonymous.post("/api/people", json={"name": "X"}).status_code == 401


# -- bad input --------------------------------------------------------------------------

BAD_BODIES = [
    (b"{not json", 400, "body"),
    (b'{"title": ""}', 422, "title"),
    (b'{"title": "' + b"x" * 201 + b'"}', 422, "title"),
    (b'{"title": "ok", "maturity_rating": "X"}', 422, "maturity_rating"),
    (b'{"title": "ok", "release_year": "1999"}', 422, "release_year"),
    (b'{"title": "ok", "release_year": 99999}', 422, "release_year"),
    (b'{"title": "ok", "slug": "Not A Slug"}', 422, "slug"),
    (b'{"title": "ok", "plan_tier": "gold"}', 422, "plan_tier"),
    (b'{"title": "ok", "spoken_languages": ["english!"]}', 422, "spoken_languages"),
    (b'{"title": "ok", "poster_url": "javascript:alert(1)"}', 422, "poster_url"),
    (b'{"title": "ok", "surprise": 1}', 422, "surprise"),
    (b'{"title": "ok", "genres": ["no-such-genre"]}', 422, "genres"),
    (b'{"title": "ok", "cast": [{"person_id": 987654321}]}', 422, "cast/crew"),
    (b'{"title": "ok", "available_from": "2030-01-02T00:00:00Z", "available_until": "2030-01-01T00:00:00Z"}',
     422, "available_until"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_BODIES)
def test_bad_movie_bodies_name_the_field_and_write_nothing(site, body, status, field):
    before = site.query(sa.select(sa.func.count().label("n")).select_from(movies))[0]["n"]
    response = site.editor.post("/api/movies", content=body, headers={"content-type": "application/json"})
    assert error_of(response, status)["details"]["field"] == field
    assert site.query(sa.select(sa.func.count().label("n")).select_from(movies))[0]["n"] == before


def test_a_bad_patch_leaves_the_movie_and_its_parts_alone(site):
    site.editor.post("/api/genres", json={"slug": "western", "name": "Western"})
    movie_id, version = site.movie(title="Untouched", genres=["western"])
    response = site.editor.patch(f"/api/movies/{movie_id}", json={"title": "Changed", "genres": ["nope"]},
                                 headers={"if-match": f'"{version}"'})
    assert error_of(response, 422)["details"]["field"] == "genres"
    body = site.editor.get(f"/api/movies/{movie_id}").json()
    assert body["title"] == "Untouched" and body["version"] == version and body["genres"] == ["western"]
    assert len(site.query(sa.select(movie_genres).where(movie_genres.c.movie_id == movie_id))) == 1


def test_a_taken_slug_is_409(site):
    slug = f"taken-{uuid.uuid4().hex[:6]}"
    site.movie(slug=slug)
    assert error_of(site.editor.post("/api/movies", json={"title": "Again", "slug": slug}), 409)["details"]["field"] == "slug"


def test_sql_and_html_in_text_are_stored_verbatim_and_answered_as_json(site):
    title = "<script>alert('x')</script>'; DROP TABLE movies; --"
    movie_id, _ = site.movie(title=title, synopsis="Robert'); DELETE FROM users; --")
    response = site.editor.get(f"/api/movies/{movie_id}")
    assert response.headers["content-type"] == "application/json"
    assert response.json()["title"] == title
    assert site.query(sa.select(sa.func.count().label("n")).select_from(movies))[0]["n"] > 0


def test_a_forged_cursor_is_422_not_a_crash(site):
    import base64
    import json

    for state in (["newest", "2020-01-01T00:00:00", 10**30], ["popularity", 10**30, 5], ["title", "x" * 500, 5]):
        cursor = base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")
        assert error_of(site.viewer.get(f"/api/movies?sort={state[0]}&cursor={cursor}"), 422)["details"]["field"] == "cursor"


@pytest.mark.parametrize("query", ["sort=loudest", "limit=0", "limit=101", "year_from=abc", "age_rating=XXX",
                                   "language=english!", "genre=Bad%20Genre", "cursor=%%%", "cursor=WyJ0aXRsZSJd",
                                   "person=-1", "offset=20", "status=draft"])
def test_bad_listing_parameters_are_422_naming_them(site, query):
    response = site.viewer.get(f"/api/movies?{query}")
    assert error_of(response, 422)["details"]["field"] == query.split("=")[0]


# -- genres and people ------------------------------------------------------------------


def test_genres_and_people_are_managed_by_editors(site):
    slug = f"g-{uuid.uuid4().hex[:6]}"
    assert site.editor.post("/api/genres", json={"slug": slug, "name": "Gen"}).status_code == 201
    assert site.editor.post("/api/genres", json={"slug": slug, "name": "Gen"}).status_code == 409
    assert site.editor.patch(f"/api/genres/{slug}", json={"name": "Renamed"}).status_code == 200
    assert {"slug": slug, "name": "Renamed"} in [
        {"slug": g["slug"], "name": g["name"]} for g in site.anonymous.get("/api/genres").json()["items"]]
    movie_id = site.published(genres=[slug])
    assert site.editor.delete(f"/api/genres/{slug}").status_code == 204
    assert site.anonymous.get(f"/api/movies/{movie_id}").json()["genres"] == []

    person = site.editor.post("/api/people", json={"name": "Wim Lindqvist"}).json()["id"]
    movie_id = site.published(title="Credited", crew=[{"person_id": person, "role": "Director"}])
    assert site.anonymous.get(f"/api/people/{person}").json()["credits"][0]["movie_id"] == movie_id
    hidden = site.movie(title="Not Yet", crew=[{"person_id": person, "role": "Writer"}])[0]  # a draft
    assert hidden not in [c["movie_id"] for c in site.anonymous.get(f"/api/people/{person}").json()["credits"]]
    assert site.editor.patch(f"/api/people/{person}", json={"name": "Wim Lindquist"}).status_code == 200
    assert site.anonymous.get(f"/api/movies/{movie_id}").json()["crew"][0]["name"] == "Wim Lindquist"
    # A "+" in a query is a plus (what SigV4 signs is what handlers read): spaces travel as %20.
    assert site.anonymous.get("/api/people?name=Wim%20Lind").json()["items"][0]["id"] == person
    assert site.editor.delete(f"/api/people/{person}").status_code == 204
    assert site.anonymous.get(f"/api/movies/{movie_id}").json()["crew"] == []
    assert site.query(sa.select(credits).where(credits.c.person_id == person)) == []
