"""The viewer API on a live Granian server, both storage profiles: profiles, X-Profile-Id, progress,
watchlist, ratings, isolation between accounts, and bad input (4xx naming the field, nothing written)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import PROFILES, LiveServer, query_rows, require_profile, server_pool
from vedina.config import load_settings
from vedina.storage.schema import movies, profiles, ratings, watch_progress, watchlist

PASSWORD = "correct horse battery staple"


class Viewer:
    """A registered, logged-in account on a live server."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=15)
        email = f"viewer-{uuid.uuid4().hex[:12]}@example.org"
        assert self.http.post("/api/auth/register", json={"email": email, "password": PASSWORD,
                                                          "display_name": "Viewer"}).status_code == 202
        login = self.http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        self.http.headers["authorization"] = f"Bearer {login.json()['access_token']}"

    def as_profile(self, profile_id: int) -> dict[str, str]:
        return {"x-profile-id": str(profile_id)}


class Site:
    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.settings = load_settings(live.env)

    def viewer(self) -> Viewer:
        return Viewer(self.live.base_url)

    def query(self, statement) -> list[dict]:
        return query_rows(self.settings, statement)

    def movie(self, slug: str) -> int:
        return self.query(sa.select(movies.c.id).where(movies.c.slug == slug))[0]["id"]


@pytest.fixture(scope="module")
def sites(live_data):
    settings = {"RATE_LIMIT_ENABLED": "false", "PROGRESS_FLUSH_SECONDS": "600"}
    with server_pool(lambda profile: Site(
        LiveServer(server="granian", env={**live_data(profile), **settings}, workers=2)
    )) as get:
        yield get


@pytest.fixture(params=PROFILES)
def site(request, sites) -> Site:
    require_profile(request.param)
    return sites(request.param)


def assert_fails_naming(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["details"]["field"] == field


# -- profiles -------------------------------------------------------------------------


def test_profiles_start_with_the_main_one_and_stop_at_five(site):
    me = site.viewer()
    listed = me.http.get("/api/profiles").json()
    assert [(p["name"], p["is_main"], p["max_age_rating"]) for p in listed["items"]] == [("Main", True, None)]
    for i in range(4):
        created = me.http.post("/api/profiles", json={"name": f"Kid {i}", "max_age_rating": "PG"})
        assert created.status_code == 201 and created.json()["max_age_rating"] == "PG"
    sixth = me.http.post("/api/profiles", json={"name": "One too many"})
    assert sixth.status_code == 409 and sixth.json()["error"]["details"]["code"] == "profile_limit_reached"
    assert len(me.http.get("/api/profiles").json()["items"]) == 5
    taken = me.http.post("/api/profiles", json={"name": "kid 0"})
    assert taken.status_code == 409


def test_a_profile_is_renamed_limited_and_deleted_but_the_main_one_stays(site):
    me = site.viewer()
    main = me.http.get("/api/profiles").json()["items"][0]
    kid = me.http.post("/api/profiles", json={"name": "Kid"}).json()
    changed = me.http.patch(f"/api/profiles/{kid['id']}", json={"name": "Junior", "max_age_rating": "G"})
    assert changed.status_code == 200 and (changed.json()["name"], changed.json()["max_age_rating"]) == ("Junior", "G")
    lifted = me.http.patch(f"/api/profiles/{kid['id']}", json={"max_age_rating": None})
    assert (lifted.json()["name"], lifted.json()["max_age_rating"]) == ("Junior", None)
    refused = me.http.delete(f"/api/profiles/{main['id']}")
    assert refused.status_code == 409 and refused.json()["error"]["details"]["code"] == "main_profile"
    assert me.http.delete(f"/api/profiles/{kid['id']}").status_code == 204
    assert me.http.get(f"/api/profiles/{kid['id']}").status_code == 404


def test_html_and_sql_in_profile_names_are_stored_verbatim_and_answered_as_json(site):
    me = site.viewer()
    for name in ("<script>alert(1)</script>", "Robert'); DROP TABLE profiles;--", "Zoë 🎬"):
        created = me.http.post("/api/profiles", json={"name": name})
        assert created.status_code == 201 and created.headers["content-type"] == "application/json"
        assert created.json()["name"] == name
        assert site.query(sa.select(profiles.c.name).where(profiles.c.id == created.json()["id"]))[0]["name"] == name


@pytest.mark.parametrize(("body", "field"), [
    ({"name": ""}, "name"),
    ({"name": "x" * 51}, "name"),
    ({"name": " padded "}, "name"),
    ({"name": "tab\there"}, "name"),
    ({"name": 42}, "name"),
    ({"name": "Ok", "max_age_rating": "X"}, "max_age_rating"),
    ({"name": "Ok", "is_main": True}, "is_main"),
    ({}, "name"),
])
def test_bad_profile_bodies_are_refused_naming_the_field_and_create_nothing(site, body, field):
    me = site.viewer()
    before = me.http.get("/api/profiles").json()["items"]
    assert_fails_naming(me.http.post("/api/profiles", json=body), 422, field)
    assert me.http.get("/api/profiles").json()["items"] == before


def test_malformed_json_is_a_400_naming_the_body(site):
    me = site.viewer()
    movie = site.movie("color-bars")
    headers = {"content-type": "application/json"}
    assert_fails_naming(me.http.post("/api/profiles", content=b'{"name": ', headers=headers), 400, "body")
    assert_fails_naming(me.http.put(f"/api/movies/{movie}/rating", content=b"{oops", headers=headers), 400, "body")


# -- X-Profile-Id and isolation ---------------------------------------------------------


def test_a_malformed_profile_header_is_a_422_naming_it(site):
    me = site.viewer()
    movie = site.movie("color-bars")
    for bad in ("abc", "-1", "0", "1.5", "9" * 30):
        response = me.http.get(f"/api/movies/{movie}/progress", headers={"x-profile-id": bad})
        assert_fails_naming(response, 422, "X-Profile-Id")


def test_another_accounts_profile_progress_watchlist_and_vote_are_unreachable(site):
    owner, stranger = site.viewer(), site.viewer()
    movie = site.movie("game-of-life")
    theirs = owner.http.post("/api/profiles", json={"name": "Private"}).json()
    owner_main = owner.http.get("/api/profiles").json()["items"][0]
    assert owner.http.put(f"/api/movies/{movie}/progress", json={"position_seconds": 3, "duration_seconds": 8},
                          headers=owner.as_profile(theirs["id"])).status_code == 200
    assert owner.http.put(f"/api/movies/{movie}/watchlist", headers=owner.as_profile(theirs["id"])).status_code == 204
    assert owner.http.put(f"/api/movies/{movie}/rating", json={"score": 9}).status_code == 200

    for other in (theirs, owner_main):
        as_them = stranger.as_profile(other["id"])
        assert stranger.http.get(f"/api/profiles/{other['id']}").status_code == 404
        assert stranger.http.patch(f"/api/profiles/{other['id']}", json={"name": "Mine now"}).status_code == 404
        assert stranger.http.delete(f"/api/profiles/{other['id']}").status_code == 404
        assert stranger.http.get(f"/api/movies/{movie}/progress", headers=as_them).status_code == 404
        assert stranger.http.get("/api/users/me/watchlist", headers=as_them).status_code == 404
        assert stranger.http.get("/api/users/me/continue-watching", headers=as_them).status_code == 404
        assert stranger.http.put(f"/api/movies/{movie}/rating", json={"score": 1}, headers=as_them).status_code == 404
    assert stranger.http.get(f"/api/movies/{movie}/progress").json()["position_seconds"] == 0
    assert stranger.http.get("/api/users/me/watchlist").json()["items"] == []
    assert stranger.http.get("/api/users/me/continue-watching").json()["items"] == []
    assert stranger.http.get(f"/api/movies/{movie}/rating").json()["score"] is None
    assert site.query(sa.select(profiles.c.name).where(profiles.c.id == theirs["id"]))[0]["name"] == "Private"


def test_without_credentials_viewer_routes_are_401(site):
    anonymous = httpx.Client(base_url=site.live.base_url, timeout=15)
    movie = site.movie("color-bars")
    assert anonymous.get("/api/profiles").status_code == 401
    assert anonymous.put(f"/api/movies/{movie}/watchlist").status_code == 401


# -- progress -------------------------------------------------------------------------------


def test_progress_reports_are_coalesced_and_reads_see_the_latest(site):
    me = site.viewer()
    movie = site.movie("mandelbrot-nights")
    main = me.http.get("/api/profiles").json()["items"][0]
    for position in range(0, 300, 5):
        response = me.http.put(f"/api/movies/{movie}/progress", json={"position_seconds": position,
                                                                       "duration_seconds": 1000})
        assert response.status_code == 200, response.text
    latest = me.http.get(f"/api/movies/{movie}/progress").json()
    assert (latest["position_seconds"], latest["duration_seconds"], latest["percent"]) == (295, 1000, 29)
    stored = site.query(sa.select(watch_progress).where(watch_progress.c.profile_id == main["id"]))
    assert [row["position_seconds"] for row in stored] == [0]  # one write in the window: the first report
    [item] = me.http.get("/api/users/me/continue-watching").json()["items"]
    assert (item["movie_id"], item["position_seconds"], item["slug"]) == (movie, 295, "mandelbrot-nights")
    done = me.http.put(f"/api/movies/{movie}/progress", json={"position_seconds": 960, "duration_seconds": 1000})
    assert done.json()["watched"] is True
    assert site.query(sa.select(watch_progress.c.watched_at).where(
        watch_progress.c.profile_id == main["id"]))[0]["watched_at"] is not None
    assert me.http.get("/api/users/me/continue-watching").json()["items"] == []
    assert me.http.delete(f"/api/movies/{movie}/watched").json()["watched"] is False
    assert me.http.post(f"/api/movies/{movie}/watched").json()["watched"] is True


@pytest.mark.parametrize(("body", "field"), [
    ({"position_seconds": 11, "duration_seconds": 10}, "position_seconds"),
    ({"position_seconds": -1, "duration_seconds": 10}, "position_seconds"),
    ({"position_seconds": "5", "duration_seconds": 10}, "position_seconds"),
    ({"position_seconds": 5, "duration_seconds": 0}, "duration_seconds"),
    ({"position_seconds": 5}, "duration_seconds"),
    ({"position_seconds": 5, "duration_seconds": 10, "extra": 1}, "extra"),
])
def test_bad_progress_reports_are_refused_naming_the_field_and_write_nothing(site, body, field):
    me = site.viewer()
    movie = site.movie("color-bars")
    main = me.http.get("/api/profiles").json()["items"][0]
    assert_fails_naming(me.http.put(f"/api/movies/{movie}/progress", json=body), 422, field)
    assert site.query(sa.select(watch_progress).where(watch_progress.c.profile_id == main["id"])) == []
    assert me.http.get(f"/api/movies/{movie}/progress").json()["position_seconds"] == 0


# -- watchlist, ratings, parental limit ----------------------------------------------------


def test_the_watchlist_is_idempotent_and_unknown_movies_are_404(site):
    me = site.viewer()
    first, second = site.movie("color-bars"), site.movie("game-of-life")
    for movie in (first, second, first):
        assert me.http.put(f"/api/movies/{movie}/watchlist").status_code == 204
    assert {i["movie_id"] for i in me.http.get("/api/users/me/watchlist").json()["items"]} == {first, second}
    assert me.http.put("/api/movies/999999999/watchlist").status_code == 404
    assert me.http.delete(f"/api/movies/{first}/watchlist").status_code == 204
    assert [i["movie_id"] for i in me.http.get("/api/users/me/watchlist").json()["items"]] == [second]
    assert_fails_naming(me.http.get("/api/users/me/watchlist?cursor=zzz"), 422, "cursor")
    assert_fails_naming(me.http.get("/api/users/me/watchlist?limit=0"), 422, "limit")


@pytest.mark.parametrize(("body", "field"), [
    ({"score": 0}, "score"), ({"score": 11}, "score"), ({"score": 7.5}, "score"), ({"score": "7"}, "score"),
    ({"score": 7, "weight": 2}, "weight"), ({}, "score"),
])
def test_bad_votes_are_refused_naming_the_field_and_count_nothing(site, body, field):
    me = site.viewer()
    movie = site.movie("color-bars")
    before = site.query(sa.select(movies.c.rating_sum, movies.c.rating_count).where(movies.c.id == movie))
    assert_fails_naming(me.http.put(f"/api/movies/{movie}/rating", json=body), 422, field)
    assert site.query(sa.select(movies.c.rating_sum, movies.c.rating_count).where(movies.c.id == movie)) == before


def test_concurrent_votes_over_http_keep_the_totals_exact(site):
    movie = site.movie("test-pattern-2")
    voters = [site.viewer() for _ in range(8)]
    scores = [(i % 10) + 1 for i in range(len(voters))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda pair: pair[0].http.put(f"/api/movies/{movie}/rating", json={"score": pair[1]}),
                                zip(voters, scores, strict=True)))
        assert all(a.status_code == 200 for a in answers)
        changed = list(pool.map(lambda v: v.http.put(f"/api/movies/{movie}/rating", json={"score": 10}), voters[:3]))
        assert all(a.status_code == 200 for a in changed)
    assert voters[3].http.delete(f"/api/movies/{movie}/rating").status_code == 204
    [totals] = site.query(sa.select(movies.c.rating_sum, movies.c.rating_count).where(movies.c.id == movie))
    [recount] = site.query(sa.select(sa.func.coalesce(sa.func.sum(ratings.c.score), 0).label("s"),
                                     sa.func.count().label("n")).where(ratings.c.movie_id == movie))
    assert (totals["rating_sum"], totals["rating_count"]) == (int(recount["s"]), recount["n"])
    mine = voters[0].http.get(f"/api/movies/{movie}/rating").json()
    assert mine["score"] == 10 and mine["count"] == totals["rating_count"]
    assert mine["average"] == round(totals["rating_sum"] / totals["rating_count"], 1)


def test_a_pg_profile_cannot_list_rate_or_play_an_r_movie(site):
    me = site.viewer()
    kid = me.http.post("/api/profiles", json={"name": "Kid", "max_age_rating": "PG"}).json()
    as_kid = me.as_profile(kid["id"])
    adult, family = site.movie("test-pattern-2"), site.movie("game-of-life")
    assert me.http.put(f"/api/movies/{adult}/watchlist", headers=as_kid).status_code == 404
    assert me.http.put(f"/api/movies/{adult}/rating", json={"score": 3}, headers=as_kid).status_code == 404
    assert me.http.put(f"/api/movies/{adult}/progress", json={"position_seconds": 1, "duration_seconds": 8},
                       headers=as_kid).status_code == 404
    for table in (watchlist, ratings, watch_progress):
        assert site.query(sa.select(table).where(table.c.profile_id == kid["id"])) == []
    assert me.http.put(f"/api/movies/{family}/watchlist", headers=as_kid).status_code == 204
    assert me.http.put(f"/api/movies/{adult}/watchlist").status_code == 204  # the main profile has no limit


# -- durability ------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_positions_held_by_a_worker_are_written_when_the_server_stops(profile, live_data):
    require_profile(profile)
    live = LiveServer(server="granian", env={**live_data(profile), "RATE_LIMIT_ENABLED": "false",
                                             "PROGRESS_FLUSH_SECONDS": "600"}, workers=1)
    site = Site(live)
    try:
        me = site.viewer()
        movie = site.movie("color-bars")
        main = me.http.get("/api/profiles").json()["items"][0]
        for position in (1, 2, 3, 4):
            me.http.put(f"/api/movies/{movie}/progress", json={"position_seconds": position, "duration_seconds": 8})
        query = sa.select(watch_progress.c.position_seconds).where(watch_progress.c.profile_id == main["id"])
        assert site.query(query) == [{"position_seconds": 1}]
    finally:
        live.stop()
    assert site.query(query) == [{"position_seconds": 4}]
