"""/api/movies/:id/comments and /api/comments over HTTP on both profiles: a live Granian server
(two workers) with the default comment budget (RATE_LIMIT_COMMENTS 5/1m burst 5). The issue's
scenario end to end, who may do what, every kind of bad input (nothing written), the budget."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import PROFILES, LiveServer, query_rows, require_profile, server_pool, signed_in
from tests.playback.conftest import PlaybackServer
from tests.security.test_markup import assert_inert
from vedina.storage.schema import comment_bans, comment_reports, comments, moderation_actions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def comment_servers(live_data):
    with server_pool(lambda profile: PlaybackServer(LiveServer(server="granian", env=live_data(profile)))) as get:
        yield get


class Site:
    """A server with one account per role, made once per profile."""

    def __init__(self, server: PlaybackServer) -> None:
        self.server = server
        self.settings = server.settings
        self.admin = signed_in(server.base_url, server.env, role="admin")
        self.moderator = signed_in(server.base_url, server.env, role="moderator")
        self.editor = signed_in(server.base_url, server.env, role="editor")

    def viewer(self) -> httpx.Client:
        return signed_in(self.server.base_url, self.server.env)

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, timeout=30)

    def movie(self, **values) -> int:
        return self.server.new_movie(**values)["id"]

    def stored(self, table, condition) -> list[dict]:
        return query_rows(self.settings, sa.select(table).where(condition))


_sites: dict[str, Site] = {}


@pytest.fixture(params=PROFILES)
def site(request, comment_servers) -> Site:
    require_profile(request.param)
    if request.param not in _sites:
        _sites[request.param] = Site(comment_servers(request.param))
    return _sites[request.param]


def user_id(http: httpx.Client) -> int:
    return http.get("/api/users/me").json()["id"]


def error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_a_viewer_comments_and_replies_another_reports_a_moderator_hides_the_author_sees_it_hidden(site):
    movie = site.movie()
    ann, bob, cid = site.viewer(), site.viewer(), site.viewer()
    top = ann.post(f"/api/movies/{movie}/comments", json={"body": "Loved the *ending*", "spoiler": True})
    assert top.status_code == 201, top.text
    top = top.json()
    assert top["body_html"] == "<p>Loved the <em>ending</em></p>" and top["spoiler"] and top["mine"]
    reply = bob.post(f"/api/movies/{movie}/comments", json={"body": "Same!", "parent_id": top["id"]}).json()
    nested = ann.post(f"/api/movies/{movie}/comments", json={"body": "Right?", "parent_id": reply["id"]}).json()
    assert (nested["parent_id"], nested["root_id"]) == (reply["id"], top["id"])

    listed = site.anonymous().get(f"/api/movies/{movie}/comments").json()
    assert listed["count"] == 3 and [t["id"] for t in listed["items"]] == [top["id"]]
    assert [(r["id"], r["parent_id"]) for r in listed["items"][0]["replies"]] == [
        (reply["id"], top["id"]), (nested["id"], reply["id"])]

    reported = cid.post(f"/api/comments/{top['id']}/reports", json={"reason": "abuse", "note": "rude"})
    assert reported.status_code == 201, reported.text
    again = cid.post(f"/api/comments/{top['id']}/reports", json={"reason": "spam"})
    assert error(again, 409)["code"] == "already_reported"

    queue = site.moderator.get("/api/comments/reported", params={"limit": 50}).json()
    queued = next(i for i in queue["items"] if i["comment"]["id"] == top["id"])
    assert queued["comment"]["user_id"] == user_id(ann) and [r["reason"] for r in queued["reports"]] == ["abuse"]
    hidden = site.moderator.post(f"/api/comments/{top['id']}/hide", json={"reason": "insults"})
    assert hidden.status_code == 200 and hidden.json()["status"] == "hidden", hidden.text
    assert all(i["comment"]["id"] != top["id"] for i in site.moderator.get("/api/comments/reported").json()["items"])

    for _ in range(4):  # whichever worker answers
        mine = ann.get(f"/api/movies/{movie}/comments").json()
        assert mine["items"][0]["status"] == "hidden" and mine["items"][0]["hidden_reason"] == "insults"
        assert mine["items"][0]["body_source"] == "Loved the *ending*" and mine["count"] == 2
        theirs = bob.get(f"/api/movies/{movie}/comments").json()["items"][0]
        assert theirs["status"] == "hidden" and theirs["body_source"] is None and theirs["hidden_reason"] is None
        assert [r["body_source"] for r in theirs["replies"]] == ["Same!", "Right?"]

    log = site.admin.get("/api/comments/moderation-log").json()["items"]
    assert any(a["action"] == "hide" and a["target_id"] == top["id"] and a["reason"] == "insults"
               and a["actor_id"] == user_id(site.moderator) for a in log)


def test_authors_edit_and_delete_their_own_and_nobody_else_does(site):
    movie = site.movie()
    ann, bob = site.viewer(), site.viewer()
    comment = ann.post(f"/api/movies/{movie}/comments", json={"body": "first"}).json()
    edited = ann.patch(f"/api/comments/{comment['id']}", json={"body": "first, **edited**"})
    assert edited.status_code == 200 and edited.json()["edited_at"] is not None, edited.text
    for other in (bob, site.moderator, site.editor, site.admin):
        assert error(other.patch(f"/api/comments/{comment['id']}", json={"body": "x"}), 403)["code"] == "not_author"
        assert error(other.delete(f"/api/comments/{comment['id']}"), 403)["code"] == "not_author"
    kids = ann.post("/api/profiles", json={"name": "Kids"}).json()
    as_kids = ann.patch(f"/api/comments/{comment['id']}", json={"body": "x"}, headers={"x-profile-id": str(kids["id"])})
    assert error(as_kids, 403)["code"] == "not_author"
    assert site.stored(comments, comments.c.id == comment["id"])[0]["body_source"] == "first, **edited**"
    assert ann.delete(f"/api/comments/{comment['id']}").status_code == 204
    tombstone = bob.get(f"/api/comments/{comment['id']}").json()
    assert tombstone["status"] == "deleted" and tombstone["body_source"] is None


def test_moderation_needs_its_permission_and_the_log_is_for_admins(site):
    movie = site.movie()
    ann = site.viewer()
    comment = ann.post(f"/api/movies/{movie}/comments", json={"body": "borderline"}).json()
    reason = {"reason": "r"}
    for caller in (ann, site.editor):
        for method, path, body in (("POST", f"/api/comments/{comment['id']}/hide", reason),
                                   ("POST", f"/api/comments/{comment['id']}/restore", reason),
                                   ("POST", f"/api/comments/{comment['id']}/dismiss", reason),
                                   ("GET", "/api/comments/reported", None),
                                   ("POST", "/api/comments/bans", {"user_id": user_id(ann), "days": 1, **reason}),
                                   ("DELETE", f"/api/comments/bans/{user_id(ann)}", None),
                                   ("GET", "/api/comments/moderation-log", None)):
            assert error(caller.request(method, path, json=body), 403)["details"]["permission"]
    assert error(site.moderator.get("/api/comments/moderation-log"), 403)["details"]["permission"] == "moderation:read"
    assert site.anonymous().post(f"/api/movies/{movie}/comments", json={"body": "hi"}).status_code == 401
    assert site.stored(moderation_actions, moderation_actions.c.target_id == comment["id"]) == []
    assert site.stored(comments, comments.c.id == comment["id"])[0]["status"] == "visible"


def test_a_ban_refuses_posts_with_its_end_and_lifting_it_lets_the_user_post(site):
    movie = site.movie()
    ann = site.viewer()
    banned = site.moderator.post("/api/comments/bans", json={"user_id": user_id(ann), "days": 2, "reason": "spam"})
    assert banned.status_code == 201, banned.text
    refused = error(ann.post(f"/api/movies/{movie}/comments", json={"body": "let me in"}), 403)
    assert refused["code"] == "comment_banned" and refused["details"]["until"] == banned.json()["until"]
    assert site.moderator.delete(f"/api/comments/bans/{user_id(ann)}", params={"reason": "ok"}).status_code == 204
    assert ann.post(f"/api/movies/{movie}/comments", json={"body": "let me in"}).status_code == 201
    assert error(site.moderator.delete(f"/api/comments/bans/{user_id(ann)}"), 404)["details"]["field"] == "user_id"
    until = site.moderator.post("/api/comments/bans", json={"user_id": user_id(ann), "reason": "again",
                                                            "until": "2099-01-01T12:00:00+02:00"})
    assert until.status_code == 422 and until.json()["error"]["details"]["field"] == "until"  # beyond ten years
    assert site.stored(comment_bans, comment_bans.c.user_id == user_id(ann)) == []


def test_the_comment_budget_is_per_account_and_past_it_posts_are_429(site):
    """The account's profiles share the budget (a new profile does not reset it); other accounts have their own."""
    movie = site.movie()
    ann = site.viewer()
    for i in range(5):
        assert ann.post(f"/api/movies/{movie}/comments", json={"body": f"burst {i}"}).status_code == 201
    refused = ann.post(f"/api/movies/{movie}/comments", json={"body": "burst 5"})
    assert error(refused, 429)["details"]["policy"] == "comments" and int(refused.headers["retry-after"]) > 0
    kids = ann.post("/api/profiles", json={"name": "Kids"}).json()
    same_account = ann.post(f"/api/movies/{movie}/comments", json={"body": "burst 5"},
                            headers={"x-profile-id": str(kids["id"])})
    assert error(same_account, 429)["details"]["policy"] == "comments"
    assert site.viewer().post(f"/api/movies/{movie}/comments", json={"body": "burst 5"}).status_code == 201
    assert len(site.stored(comments, comments.c.movie_id == movie)) == 6


def test_xss_payloads_over_http_are_stored_verbatim_and_served_inert(site):
    movie = site.movie()
    payloads = ["<img src=x onerror=alert(1)>", "[x](javascript:alert(1))", "<svg/onload=alert(1)>",
                "'; DROP TABLE comments; --"]
    ann = site.viewer()
    for payload in payloads:
        posted = ann.post(f"/api/movies/{movie}/comments", json={"body": payload})
        assert posted.status_code == 201 and posted.json()["body_source"] == payload, posted.text
        assert_inert(posted.json()["body_html"])
    listed = site.anonymous().get(f"/api/movies/{movie}/comments").json()["items"]
    assert sorted(t["body_source"] for t in listed) == sorted(payloads)
    assert len(site.stored(comments, comments.c.movie_id == movie)) == 4


def test_every_kind_of_bad_input_names_the_field_and_writes_nothing(site):
    movie, draft, rated = site.movie(), site.movie(status="draft", published_at=None), site.movie(maturity_rating="R")
    ann, bob = site.viewer(), site.viewer()
    kids = ann.post("/api/profiles", json={"name": "Kids", "max_age_rating": "PG"}).json()
    bobs_kids = bob.post("/api/profiles", json={"name": "Kids"}).json()
    existing = bob.post(f"/api/movies/{movie}/comments", json={"body": "a comment"}).json()
    url = f"/api/movies/{movie}/comments"
    raw = {"content-type": "application/json"}
    cases = [
        (ann.post(url, content=b'{"body": "x"', headers=raw), 400, "body"),
        (ann.post(url, content=b"\xff\xfe", headers=raw), 400, "body"),
        (ann.post(url, content=b"body=x", headers={"content-type": "application/x-www-form-urlencoded"}), 415,
         "content-type"),
        (ann.post(url, json={"body": "x", "author": "admin"}), 422, "author"),
        (ann.post(url, json={}), 422, "body"),
        (ann.post(url, json={"body": 5}), 422, "body"),
        (ann.post(url, json={"body": ""}), 422, "body"),
        (ann.post(url, json={"body": " \n\t "}), 422, "body"),
        (ann.post(url, json={"body": "x" * 5001}), 422, "body"),
        (ann.post(url, json={"body": "nul \u0000"}), 422, "body"),
        (ann.post(url, json={"body": "x", "spoiler": "yes"}), 422, "spoiler"),
        (ann.post(url, json={"body": "x", "parent_id": 0}), 422, "parent_id"),
        (ann.post(url, json={"body": "x", "parent_id": "1"}), 422, "parent_id"),
        (ann.post(url, json={"body": "x", "parent_id": 2**62}), 404, "parent_id"),
        (ann.post("/api/movies/abc/comments", json={"body": "x"}), 422, "id"),
        (ann.post("/api/movies/0/comments", json={"body": "x"}), 422, "id"),
        (ann.post(url, json={"body": "x"}, headers={"x-profile-id": "1; DROP TABLE"}), 422, "X-Profile-Id"),
        (ann.get(url, params={"cursor": "n1' OR 1=1"}), 422, "cursor"),
        (ann.get(url, params={"order": "best"}), 422, "order"),
        (ann.get(url, params={"limit": "51"}), 422, "limit"),
        (ann.patch(f"/api/comments/{existing['id']}", json={"body": "x", "pinned": True}), 422, "pinned"),
        (ann.patch("/api/comments/abc", json={"body": "x"}), 422, "id"),
        (bob.patch(f"/api/comments/{existing['id']}", json={}), 422, "body"),
        (ann.post(f"/api/comments/{existing['id']}/reports", json={"reason": "boring"}), 422, "reason"),
        (ann.post(f"/api/comments/{existing['id']}/reports", json={"reason": "spam", "note": "n" * 501}), 422, "note"),
        (site.moderator.post(f"/api/comments/{existing['id']}/hide", json={"reason": "   "}), 422, "reason"),
        (site.moderator.post(f"/api/comments/{existing['id']}/hide", json={}), 422, "reason"),
        (site.moderator.post("/api/comments/bans", json={"user_id": user_id(ann), "reason": "r"}), 422, "days"),
        (site.moderator.post("/api/comments/bans", json={"user_id": user_id(ann), "reason": "r", "days": 0}), 422,
         "days"),
        (site.moderator.post("/api/comments/bans", json={"user_id": 2**62, "reason": "r", "days": 1}), 404, "user_id"),
        (site.moderator.get("/api/comments/reported", params={"cursor": "zz"}), 422, "cursor"),
        (site.admin.get("/api/comments/moderation-log", params={"cursor": "-1"}), 422, "cursor"),
    ]
    for index, (response, status, field) in enumerate(cases):
        assert response.status_code == status, (index, response.text)
        assert response.json()["error"]["details"]["field"] == field, (index, response.text)
    # Not found: an unpublished movie, one above the profile's limit, another account's profile, no such comment.
    for response in (ann.post(f"/api/movies/{draft}/comments", json={"body": "x"}),
                     ann.get(f"/api/movies/{draft}/comments"),
                     ann.post(f"/api/movies/{rated}/comments", json={"body": "x"},
                              headers={"x-profile-id": str(kids["id"])}),
                     ann.get(f"/api/movies/{rated}/comments", headers={"x-profile-id": str(kids["id"])}),
                     ann.post(url, json={"body": "x"}, headers={"x-profile-id": str(bobs_kids["id"])}),
                     ann.get(f"/api/comments/{10**17}"),
                     ann.post(f"/api/comments/{10**17}/reports", json={"reason": "spam"})):
        assert error(response, 404)["code"] == "not_found"
    assert [c["id"] for c in query_rows(site.settings, sa.select(comments.c.id).where(
        comments.c.movie_id.in_([movie, draft, rated])))] == [existing["id"]]
    assert site.stored(comment_reports, comment_reports.c.comment_id == existing["id"]) == []
    assert site.stored(comment_bans, comment_bans.c.user_id == user_id(ann)) == []
    assert site.stored(comments, comments.c.id == existing["id"])[0]["status"] == "visible"


def test_every_comment_endpoint_is_in_the_openapi_document(site):
    paths = site.anonymous().get("/openapi.json").json()["paths"]
    expected = {
        "/api/movies/{id}/comments": {"get", "post"},
        "/api/comments/{id}": {"get", "patch", "delete"},
        "/api/comments/{id}/reports": {"post"},
        "/api/comments/{id}/hide": {"post"},
        "/api/comments/{id}/restore": {"post"},
        "/api/comments/{id}/dismiss": {"post"},
        "/api/comments/reported": {"get"},
        "/api/comments/bans": {"post"},
        "/api/comments/bans/{user_id}": {"delete"},
        "/api/comments/moderation-log": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= {m for m in paths.get(path, {}) if m != "head"}, path
