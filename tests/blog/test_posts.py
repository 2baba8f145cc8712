"""Writing and reading blog posts over HTTP on both profiles: drafts, If-Match, revisions, the
state machine, slugs, pages and tags, ETag/304, bad input (4xx naming the field, nothing
written) and who may write."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.blog.conftest import error_of
from vedina.storage.schema import media_assets


def _in_hours(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0).isoformat()


def test_a_new_post_is_a_draft_that_only_editors_see(site):
    post = site.draft(title="Draft only", body="# Heading\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n~~gone~~")
    assert post["status"] == "draft" and post["version"] == 1 and post["published_at"] is None
    assert post["author"]["display_name"] == "Tester"
    assert "<h1>Heading</h1>" in post["body_html"] and "<table>" in post["body_html"]
    assert "<td>1</td>" in post["body_html"] and "<s>gone</s>" in post["body_html"]
    assert site.anonymous.get(f"/api/blog/posts/{post['slug']}").status_code == 404
    assert post["id"] not in {p["id"] for p in site.anonymous.get("/api/blog/posts").json()["items"]}
    seen = site.editor.get(f"/api/blog/editor/posts/{post['id']}")
    assert seen.status_code == 200 and seen.headers["etag"] == '"1"' and seen.json()["body_source"].startswith("#")


def test_publishing_shows_the_post_with_an_etag_and_304(site):
    post = site.published(title="Now public", excerpt="Short")
    assert post["status"] == "published" and post["published_at"] and post["version"] == 2
    detail = site.anonymous.get(f"/api/blog/posts/{post['slug']}")
    assert detail.status_code == 200 and detail.json()["title"] == "Now public"
    assert "body_source" not in detail.json() and "version" not in detail.json()
    etag = detail.headers["etag"]
    again = site.anonymous.get(f"/api/blog/posts/{post['slug']}", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    listed = site.anonymous.get("/api/blog/posts")
    assert post["id"] in {p["id"] for p in listed.json()["items"]}
    assert site.anonymous.get("/api/blog/posts", headers={"if-none-match": listed.headers["etag"]}).status_code == 304
    # A change makes a new document: the old tag no longer matches.
    patched = site.editor.patch(f"/api/blog/posts/{post['id']}", json={"title": "Now changed"},
                                headers={"if-match": '"2"'})
    assert patched.status_code == 200, patched.text
    changed = site.anonymous.get(f"/api/blog/posts/{post['slug']}", headers={"if-none-match": etag})
    assert changed.status_code == 200 and changed.json()["title"] == "Now changed"


def test_patch_with_a_stale_version_is_412_and_without_if_match_428(site):
    post = site.draft(title="Contested")
    first = site.editor.patch(f"/api/blog/posts/{post['id']}", json={"title": "Editor one"},
                              headers={"if-match": '"1"'})
    assert first.status_code == 200 and first.json()["version"] == 2 and first.headers["etag"] == '"2"'
    error = error_of(site.editor.patch(f"/api/blog/posts/{post['id']}", json={"title": "Editor two"},
                                       headers={"if-match": '"1"'}), 412)
    assert error["code"] == "precondition_failed" and error["details"]["version"] == 2
    error = error_of(site.editor.patch(f"/api/blog/posts/{post['id']}", json={"title": "Editor two"}), 428)
    assert error["details"]["field"] == "If-Match"
    error = error_of(site.editor.patch(f"/api/blog/posts/{post['id']}", json={"title": "x"},
                                       headers={"if-match": "nope"}), 422)
    assert error["details"]["field"] == "If-Match"
    assert site.editor.get(f"/api/blog/editor/posts/{post['id']}").json()["title"] == "Editor one"


def test_every_save_keeps_a_revision(site):
    post = site.draft(title="Rev one", body="first")
    site.editor.patch(f"/api/blog/posts/{post['id']}", json={"title": "Rev two", "body": "second"},
                      headers={"if-match": '"1"'})
    site.editor.patch(f"/api/blog/posts/{post['id']}", json={"excerpt": "third"}, headers={"if-match": '"2"'})
    site.editor.post(f"/api/blog/posts/{post['id']}/publish")
    revisions = site.editor.get(f"/api/blog/editor/posts/{post['id']}/revisions").json()["items"]
    assert [r["version"] for r in revisions] == [4, 3, 2, 1]
    assert [r["title"] for r in revisions] == ["Rev two", "Rev two", "Rev two", "Rev one"]
    assert [r["body_source"] for r in revisions] == ["second", "second", "second", "first"]
    assert revisions[1]["excerpt"] == "third" and all(r["editor_id"] for r in revisions)
    first_page = site.editor.get(f"/api/blog/editor/posts/{post['id']}/revisions", params={"limit": 3}).json()
    rest = site.editor.get(f"/api/blog/editor/posts/{post['id']}/revisions",
                           params={"cursor": first_page["next_cursor"]}).json()
    assert [r["version"] for r in rest["items"]] == [1] and rest["next_cursor"] is None
    assert site.editor.get("/api/blog/editor/posts/999999999/revisions").status_code == 404


def test_a_post_moves_draft_scheduled_published_archived_and_other_moves_are_409(site):
    post = site.draft(title="Lifecycle")
    scheduled = site.editor.post(f"/api/blog/posts/{post['id']}/schedule", json={"publish_at": _in_hours(5)})
    assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled"
    assert scheduled.json()["publish_at"] is not None
    assert site.anonymous.get(f"/api/blog/posts/{post['slug']}").status_code == 404, "scheduled is not public"
    published = site.editor.post(f"/api/blog/posts/{post['id']}/publish")
    assert published.status_code == 200 and published.json()["status"] == "published"
    assert site.anonymous.get(f"/api/blog/posts/{post['slug']}").status_code == 200
    for action, body in (("publish", None), ("schedule", {"publish_at": _in_hours(1)})):
        error = error_of(site.editor.post(f"/api/blog/posts/{post['id']}/{action}", json=body), 409)
        assert error["code"] == "invalid_transition" and error["details"]["status"] == "published"
    archived = site.editor.post(f"/api/blog/posts/{post['id']}/archive")
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    assert site.anonymous.get(f"/api/blog/posts/{post['slug']}").status_code == 404
    assert post["id"] not in {p["id"] for p in site.anonymous.get("/api/blog/posts").json()["items"]}
    for action in ("publish", "archive"):
        assert error_of(site.editor.post(f"/api/blog/posts/{post['id']}/{action}"), 409)["details"]["status"] == "archived"
    stale = site.editor.post(f"/api/blog/posts/{post['id']}/archive", headers={"if-match": '"1"'})
    assert stale.status_code == 412
    assert site.editor.post("/api/blog/posts/999999999/publish").status_code == 404


def test_a_taken_slug_is_409_and_a_slug_made_from_the_title_gets_a_suffix(site):
    slug = f"taken-{uuid.uuid4().hex[:8]}"
    site.draft(slug=slug)
    before = site.counts()
    error = error_of(site.editor.post("/api/blog/posts", json={"title": "Again", "slug": slug}), 409)
    assert error["details"]["field"] == "slug" and site.counts() == before
    other = site.draft()
    error = error_of(site.editor.patch(f"/api/blog/posts/{other['id']}", json={"slug": slug},
                                       headers={"if-match": '"1"'}), 409)
    assert error["details"]["field"] == "slug" and site.counts() == (before[0] + 1, before[1] + 1)
    title = f"Same Title {uuid.uuid4().hex[:6]}"
    first, second = site.draft(title=title), site.draft(title=title)
    assert second["slug"] == f"{first['slug']}-2"


def test_concurrent_posts_with_one_title_all_get_a_slug_of_their_own(site):
    title = f"Race {uuid.uuid4().hex[:6]}"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: site.editor.post("/api/blog/posts", json={"title": title}), range(8)))
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    slugs = {a.json()["slug"] for a in answers}
    assert len(slugs) == 8 and all(s.startswith(f"race-{title[5:]}") for s in slugs)


def test_the_list_pages_by_cursor_newest_first_and_filters_by_tag(site):
    tag = f"tag-{uuid.uuid4().hex[:8]}"
    made = [site.published(tags=[tag, "common"])["id"] for _ in range(5)]
    site.draft(tags=[tag])  # never listed
    seen, cursor = [], None
    for _ in range(5):
        params = {"tag": tag, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = site.anonymous.get("/api/blog/posts", params=params)
        assert page.status_code == 200, page.text
        seen += [p["id"] for p in page.json()["items"]]
        assert all(tag in p["tags"] for p in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    untagged = site.anonymous.get("/api/blog/posts", params={"tag": f"none-{uuid.uuid4().hex[:6]}"}).json()
    assert untagged["items"] == [] and untagged["next_cursor"] is None


def test_related_movies_show_only_when_published_and_the_cover_must_be_an_image(site):
    public, hidden = site.movie(publish=True), site.movie(publish=False)
    post = site.published(movie_ids=[public["id"], hidden["id"]])
    assert sorted(post["movie_ids"]) == sorted([public["id"], hidden["id"]])
    detail = site.anonymous.get(f"/api/blog/posts/{post['slug']}").json()
    assert [m["id"] for m in detail["movies"]] == [public["id"]] and detail["movies"][0]["slug"] == public["slug"]
    assert detail["cover_url"] is None
    before = site.counts()
    error = error_of(site.editor.post("/api/blog/posts", json={"title": "Cover", "cover_asset_id": 999999}), 422)
    assert error["details"]["field"] == "cover_asset_id" and site.counts() == before
    error = error_of(site.editor.post("/api/blog/posts", json={"title": "Films", "movie_ids": [999999]}), 422)
    assert error["details"]["field"] == "movie_ids" and site.counts() == before
    path = f"covers/{uuid.uuid4().hex}.jpg"
    site.execute(sa.insert(media_assets).values(
        movie_id=public["id"], kind="poster", path=path, content_type="image/jpeg", status="ready",
        created_at=datetime.now(UTC).replace(tzinfo=None), updated_at=datetime.now(UTC).replace(tzinfo=None)))
    asset_id = site.query(sa.select(media_assets.c.id).where(media_assets.c.path == path))[0]["id"]
    with_cover = site.draft(cover_asset_id=asset_id)
    assert with_cover["cover_url"] == f"/api/media/{asset_id}" and with_cover["cover_asset_id"] == asset_id


def test_the_body_is_rendered_and_sanitised(site):
    source = (
        "<script>alert(1)</script>\n\n[x](javascript:alert(1)) [ok](https://example.org)\n\n"
        "![mine](/api/media/7) ![theirs](https://evil.example/x.png)\n\n<img src=x onerror=alert(1)>\n\n"
        "<a href=\"https://example.org\" onclick=\"steal()\" style=\"color:red\">styled</a>"
    )
    html = site.draft(body=source)["body_html"]
    for forbidden in ("<script", 'href="javascript', "onerror", "onclick", "style=", "evil.example"):
        assert forbidden not in html, forbidden
    assert "[x](javascript:alert(1))" in html, "a link CommonMark refuses stays text"
    assert '<img src="/api/media/7" alt="mine"' in html
    assert '<a href="https://example.org" rel="noopener">ok</a>' in html


def test_html_and_sql_in_a_title_are_stored_verbatim(site):
    title = "<script>alert('x')</script>'; DROP TABLE blog_posts; --"
    post = site.published(title=title)
    assert site.anonymous.get(f"/api/blog/posts/{post['slug']}").json()["title"] == title
    assert site.counts()[0] > 0


BAD_BODIES = [
    ("malformed JSON", b'{"title": ', 400, "body"),
    ("not an object", b"[1, 2]", 422, "body"),
    ("unknown field", b'{"title": "x", "status": "published"}', 422, "status"),
    ("missing title", b'{"body": "x"}', 422, "title"),
    ("empty title", b'{"title": ""}', 422, "title"),
    ("overlong title", b'{"title": "' + b"x" * 201 + b'"}', 422, "title"),
    ("control character in title", b'{"title": "a\\u0007b"}', 422, "title"),
    ("bad slug", b'{"title": "x", "slug": "Not A Slug!"}', 422, "slug"),
    ("overlong slug", b'{"title": "x", "slug": "' + b"a" * 121 + b'"}', 422, "slug"),
    ("NUL in body", b'{"title": "x", "body": "a\\u0000b"}', 422, "body"),
    ("overlong excerpt", b'{"title": "x", "excerpt": "' + b"e" * 501 + b'"}', 422, "excerpt"),
    ("bad tag", b'{"title": "x", "tags": ["Bad Tag"]}', 422, "tags"),
    ("too many tags", b'{"title": "x", "tags": [' + b",".join(b'"t%d"' % i for i in range(11)) + b"]}", 422, "tags"),
    ("movie id not a number", b'{"title": "x", "movie_ids": ["1"]}', 422, "movie_ids"),
    ("negative cover id", b'{"title": "x", "cover_asset_id": -1}', 422, "cover_asset_id"),
    ("title of the wrong type", b'{"title": 5}', 422, "title"),
    ("slug with a trailing newline", b'{"title": "x", "slug": "hello\\n"}', 422, "slug"),
    ("tag with a trailing newline", b'{"title": "x", "tags": ["news\\n"]}', 422, "tags"),
]


@pytest.mark.parametrize("body,status,field", [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
def test_a_bad_post_body_names_the_field_and_writes_nothing(site, body, status, field):
    before = site.counts()
    response = site.editor.post("/api/blog/posts", content=body, headers={"content-type": "application/json"})
    assert error_of(response, status)["details"]["field"] == field
    assert site.counts() == before


def test_a_body_that_is_not_json_is_415_and_a_bad_patch_writes_nothing(site):
    before = site.counts()
    response = site.editor.post("/api/blog/posts", content=b"title=x", headers={"content-type": "text/plain"})
    assert error_of(response, 415)["details"]["field"] == "content-type"
    post = site.draft(title="Patched badly")
    before = site.counts()
    for patch, field in (({"title": "y" * 201}, "title"), ({"version": 9}, "version"), ({"slug": "UP"}, "slug")):
        response = site.editor.patch(f"/api/blog/posts/{post['id']}", json=patch, headers={"if-match": '"1"'})
        assert error_of(response, 422)["details"]["field"] == field
    assert site.counts() == before
    assert site.editor.get(f"/api/blog/editor/posts/{post['id']}").json()["version"] == 1


@pytest.mark.parametrize("publish_at,field", [
    ("not a date", "publish_at"), ("2026-13-40T00:00:00Z", "publish_at"), ("2030-01-01T00:00:00", "publish_at"),
    ("2001-01-01T00:00:00Z", "publish_at"), ("2999-01-01T00:00:00Z", "publish_at"), (None, "publish_at"),
    ("0001-01-01T00:00:00+01:00", "publish_at"), ("9999-12-31T23:00:00-14:00", "publish_at"),
])
def test_a_bad_schedule_time_names_publish_at_and_changes_nothing(site, publish_at, field):
    post = site.draft()
    before = site.counts()
    response = site.editor.post(f"/api/blog/posts/{post['id']}/schedule", json={"publish_at": publish_at})
    assert error_of(response, 422)["details"]["field"] == field
    assert site.counts() == before
    assert site.editor.get(f"/api/blog/editor/posts/{post['id']}").json()["status"] == "draft"


@pytest.mark.parametrize("path,params,field", [
    ("/api/blog/posts", {"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
    ("/api/blog/posts", {"cursor": "!!"}, "cursor"),
    ("/api/blog/posts", {"tag": "Not a tag"}, "tag"),
    ("/api/blog/posts", {"limit": "0"}, "limit"),
    ("/api/blog/posts", {"limit": "ten"}, "limit"),
    ("/api/blog/posts", {"status": "draft"}, "status"),
    ("/api/blog/posts/Bad%20Slug", {}, "slug"),
    ("/api/blog/editor/posts", {"status": "gone"}, "status"),
    # A cursor of the public list (published_at) is not one of the editors' list (updated_at).
    ("/api/blog/editor/posts", {"cursor": "WyJwdWJsaXNoZWRfYXQiLCAiMjAyNi0wMS0wMVQwMDowMDowMCIsIDFd"}, "cursor"),
    ("/api/blog/editor/posts/abc", {}, "id"),
    ("/api/blog/editor/posts/1/revisions", {"cursor": "-1"}, "cursor"),
])
def test_bad_parameters_are_422_naming_the_parameter(site, path, params, field):
    assert error_of(site.editor.get(path, params=params), 422)["details"]["field"] == field


def test_viewers_and_moderators_cannot_write_and_anonymous_callers_must_sign_in(site):
    post = site.draft(title="Guarded")
    before = site.counts()
    writes = [
        ("POST", "/api/blog/posts", {"title": "Not mine"}),
        ("PATCH", f"/api/blog/posts/{post['id']}", {"title": "Not mine"}),
        ("POST", f"/api/blog/posts/{post['id']}/publish", None),
        ("POST", f"/api/blog/posts/{post['id']}/schedule", {"publish_at": _in_hours(3)}),
        ("POST", f"/api/blog/posts/{post['id']}/archive", None),
        ("GET", "/api/blog/editor/posts", None),
        ("GET", f"/api/blog/editor/posts/{post['id']}", None),
        ("GET", f"/api/blog/editor/posts/{post['id']}/revisions", None),
    ]
    for method, path, body in writes:
        headers = {"if-match": '"1"'}
        assert site.anonymous.request(method, path, json=body, headers=headers).status_code == 401, path
        for client in (site.viewer, site.moderator):
            error = error_of(client.request(method, path, json=body, headers=headers), 403)
            assert error["details"]["permission"] == "blog:write"
    assert site.counts() == before
    assert site.editor.get(f"/api/blog/editor/posts/{post['id']}").json()["status"] == "draft"
    by_admin = site.admin.patch(f"/api/blog/posts/{post['id']}", json={"title": "Admin may"},
                                headers={"if-match": '"1"'})
    assert by_admin.status_code == 200 and by_admin.json()["title"] == "Admin may"


def test_editors_list_posts_of_every_status(site):
    draft, published = site.draft(), site.published()
    drafts = site.editor.get("/api/blog/editor/posts", params={"status": "draft", "limit": 50}).json()["items"]
    assert draft["id"] in {p["id"] for p in drafts} and all(p["status"] == "draft" for p in drafts)
    everything = site.editor.get("/api/blog/editor/posts", params={"limit": 2})
    assert everything.status_code == 200 and len(everything.json()["items"]) == 2
    following = site.editor.get("/api/blog/editor/posts", params={"cursor": everything.json()["next_cursor"]})
    assert following.status_code == 200
    assert not {p["id"] for p in following.json()["items"]} & {p["id"] for p in everything.json()["items"]}
    live = site.editor.get("/api/blog/editor/posts", params={"status": "published", "limit": 50}).json()["items"]
    assert published["id"] in {p["id"] for p in live} and draft["id"] not in {p["id"] for p in live}


def test_a_long_post_is_stored_whole(site):
    """Bodies are MEDIUMTEXT on MariaDB: a post longer than TEXT's 65,535 bytes is kept, not refused."""
    body = "\n\n".join(f"Paragraph {n}: " + "é" * 700 for n in range(60))  # ~85,000 bytes of UTF-8
    created = site.editor.post("/api/blog/posts", json={"title": "A long read", "body": body})
    assert created.status_code == 201, created.text
    again = site.editor.get(f"/api/blog/editor/posts/{created.json()['id']}")
    assert again.json()["body_source"] == body
