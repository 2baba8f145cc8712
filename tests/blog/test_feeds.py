"""The blog's RSS and Atom feeds (parsed with feedparser), the sitemap (parsed with ElementTree)
and scheduled publication driven by a controllable clock, over HTTP on both profiles."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import feedparser
import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.blog.conftest import BASE_URL
from tests.conftest import VEDINA, free_port, wait_for
from vedina.errors import NotFound
from vedina.services import feeds
from vedina.storage.schema import blog_posts, scheduled_tasks, scheduler_leases

SPECIAL = "Tom & Jerry <b>\"quoted\"</b> 'apostrophe' ]]> &amp;"
SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


def _feed(site, path: str, content_type: str):
    response = site.anonymous.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(content_type)
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return response, parsed


def test_the_rss_feed_is_valid_and_escapes_what_titles_hold(site):
    post = site.published(title=SPECIAL, body="A **bold** claim\n\n<script>alert(1)</script>", tags=["news"],
                          excerpt="Ex & cerpt")
    draft = site.draft(title=f"Unpublished {uuid.uuid4().hex[:6]}")
    response, parsed = _feed(site, "/api/blog/feed.rss", "application/rss+xml")
    assert parsed.version == "rss20" and parsed.feed.title == "Vedina blog"
    assert b"<script>" not in response.content and b"<b>" not in response.content, "markup arrives escaped"
    entry = next(e for e in parsed.entries if e.link == f"{BASE_URL}/blog/{post['slug']}")
    assert entry.title == SPECIAL and entry.id == entry.link
    assert "<strong>bold</strong>" in entry.description and "script" not in entry.description
    published = datetime.fromisoformat(post["published_at"]).replace(tzinfo=UTC)
    assert datetime(*entry.published_parsed[:6], tzinfo=UTC) == published
    assert [t.term for t in entry.tags] == ["news"] and entry.author == "Tester"
    assert draft["title"] not in {e.title for e in parsed.entries}
    again = site.anonymous.get("/api/blog/feed.rss", headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304


def test_the_atom_feed_is_valid_and_newest_first(site):
    first = site.published(title=f"Older {SPECIAL}")
    second = site.published(title=f"Newer {uuid.uuid4().hex[:6]}", excerpt="Summary <i>text</i>")
    response, parsed = _feed(site, "/api/blog/feed.atom", "application/atom+xml")
    assert parsed.version == "atom10" and parsed.feed.title == "Vedina blog"
    links = [e.link for e in parsed.entries]
    newer, older = links.index(f"{BASE_URL}/blog/{second['slug']}"), links.index(f"{BASE_URL}/blog/{first['slug']}")
    assert newer < older
    entry = parsed.entries[older]
    assert entry.title == f"Older {SPECIAL}" and entry.id == f"{BASE_URL}/blog/{first['slug']}"
    assert entry.content[0].type == "text/html" and "<em>world</em>" in entry.content[0].value
    assert parsed.entries[newer].summary == "Summary <i>text</i>"
    assert entry.updated_parsed is not None and entry.published_parsed is not None
    assert site.anonymous.get("/api/blog/feed.atom", headers={"if-none-match": response.headers["etag"]}).status_code == 304


def test_archived_posts_leave_the_feeds(site):
    post = site.published(title=f"Leaving {uuid.uuid4().hex[:6]}")
    assert post["title"] in {e.title for e in _feed(site, "/api/blog/feed.rss", "application/rss+xml")[1].entries}
    assert site.editor.post(f"/api/blog/posts/{post['id']}/archive").status_code == 200
    for path, kind in (("/api/blog/feed.rss", "application/rss+xml"), ("/api/blog/feed.atom", "application/atom+xml")):
        assert post["title"] not in {e.title for e in _feed(site, path, kind)[1].entries}


def _sitemap_locations(site, path: str = "/api/sitemap.xml") -> tuple[ET.Element, list[str]]:
    response = site.anonymous.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    return root, [loc.text for loc in root.iter(f"{SITEMAP}loc")]


def test_the_sitemap_lists_published_posts_and_movies_only(site):
    post, draft = site.published(title=SPECIAL), site.draft()
    archived = site.published()
    site.editor.post(f"/api/blog/posts/{archived['id']}/archive")
    movie, hidden = site.movie(publish=True), site.movie(publish=False)
    embargoed = site.movie(publish=True, available_from="2099-01-01T00:00:00Z")  # published, not yet available
    root, locations = _sitemap_locations(site)
    assert root.tag == f"{SITEMAP}urlset"
    assert f"{BASE_URL}/blog/{post['slug']}" in locations and f"{BASE_URL}/movies/{movie['slug']}" in locations
    for absent in (f"{BASE_URL}/blog/{draft['slug']}", f"{BASE_URL}/blog/{archived['slug']}",
                   f"{BASE_URL}/movies/{hidden['slug']}", f"{BASE_URL}/movies/{embargoed['slug']}"):
        assert absent not in locations
    for url in root.iter(f"{SITEMAP}url"):
        assert datetime.fromisoformat(url.find(f"{SITEMAP}lastmod").text.replace("Z", "+00:00")).tzinfo is not None
    response = site.anonymous.get("/api/sitemap.xml")
    assert site.anonymous.get("/api/sitemap.xml", headers={"if-none-match": response.headers["etag"]}).status_code == 304
    assert site.anonymous.get("/api/sitemaps/1.xml").status_code == 404, "no index while one sitemap holds all"
    assert site.anonymous.get("/api/sitemaps/nope").status_code == 404


def test_a_sitemap_over_its_page_size_becomes_an_index_of_pages(site):
    site.published(), site.movie(publish=True)

    async def read(services):
        root, pages = await services.sitemap.root(), []
        while True:
            try:
                pages.append(await services.sitemap.page(len(pages) + 1))
            except NotFound:  # past the last page
                return root, pages

    root_doc, pages = site.in_process(read, sitemap_page_urls=2)
    assert len(pages) >= 2
    index = ET.fromstring(root_doc.body)
    assert index.tag == f"{SITEMAP}sitemapindex"
    named = [loc.text for loc in index.iter(f"{SITEMAP}loc")]
    assert named == [f"{BASE_URL}/api/sitemaps/{n}.xml" for n in range(1, len(pages) + 1)]
    urls = [loc.text for page in pages for loc in ET.fromstring(page.body).iter(f"{SITEMAP}loc")]
    assert all(len(list(ET.fromstring(p.body).iter(f"{SITEMAP}url"))) <= 2 for p in pages)
    whole = _sitemap_locations(site)[1]
    assert urls == whole and len(urls) == len(set(urls)), "the pages hold every URL of the one sitemap, once"


def test_a_scheduled_post_appears_in_the_list_and_feeds_at_its_time(site):
    publish_at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    post = site.draft(title=f"Scheduled {SPECIAL}", tags=["soon"])
    scheduled = site.editor.post(f"/api/blog/posts/{post['id']}/schedule", json={"publish_at": publish_at.isoformat()},
                                 headers={"if-match": '"1"'})
    assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled", scheduled.text

    def visible() -> dict[str, bool]:
        listed = {p["id"] for p in site.anonymous.get("/api/blog/posts", params={"tag": "soon"}).json()["items"]}
        link = f"{BASE_URL}/blog/{post['slug']}"
        rss = {e.link for e in feedparser.parse(site.anonymous.get("/api/blog/feed.rss").content).entries}
        atom = {e.link for e in feedparser.parse(site.anonymous.get("/api/blog/feed.atom").content).entries}
        detail = site.anonymous.get(f"/api/blog/posts/{post['slug']}").status_code == 200
        return {"list": post["id"] in listed, "rss": link in rss, "atom": link in atom, "detail": detail}

    assert visible() == {"list": False, "rss": False, "atom": False, "detail": False}
    naive = publish_at.replace(tzinfo=None)

    async def tick(services, at):
        return await services.blog.publish_due(now=at)

    assert site.in_process(lambda s: tick(s, naive - timedelta(seconds=1))) == 0, "not before its time"
    assert visible() == {"list": False, "rss": False, "atom": False, "detail": False}
    assert site.in_process(lambda s: tick(s, naive)) == 1
    assert visible() == {"list": True, "rss": True, "atom": True, "detail": True}, "every worker sees it at once"
    assert site.in_process(lambda s: tick(s, naive + timedelta(minutes=5))) == 0, "published once"
    row = site.query(sa.select(blog_posts).where(blog_posts.c.id == post["id"]))[0]
    assert row["status"] == "published" and row["published_at"] == naive and row["version"] == 3
    revisions = site.editor.get(f"/api/blog/editor/posts/{post['id']}/revisions").json()["items"]
    assert [(r["version"], r["editor_id"]) for r in revisions][0] == (3, None)


def test_two_schedulers_publish_a_due_post_once(site):
    publish_at = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    post = site.draft()
    site.editor.post(f"/api/blog/posts/{post['id']}/schedule", json={"publish_at": publish_at.isoformat()})
    at = publish_at.replace(tzinfo=None)

    async def race(services):
        import asyncio

        from vedina.composition import open_services

        other = await open_services(site.settings)
        try:
            return await asyncio.gather(services.blog.publish_due(now=at), other.blog.publish_due(now=at))
        finally:
            await other.close()

    counts = site.in_process(race)
    assert sum(counts) == 1, counts
    assert len(site.editor.get(f"/api/blog/editor/posts/{post['id']}/revisions").json()["items"]) == 3


def test_feed_xml_escapes_every_special_character():
    now = datetime(2026, 1, 2, 3, 4, 5)
    post = {"slug": "s", "title": SPECIAL, "excerpt": "<&>", "body_html": "<p>a &amp; b</p>", "tags": ["t"],
            "published_at": now, "updated_at": now, "author_name": "<Ann & Bob>\ufffe\x01"}
    for document in (feeds.rss([post], base_url=BASE_URL), feeds.atom([post], base_url=BASE_URL)):
        parsed = feedparser.parse(document)
        assert parsed.bozo == 0 and parsed.entries[0].title == SPECIAL
        assert b"<b>" not in document and b"<Ann" not in document
        ET.fromstring(document)  # well-formed: characters XML cannot hold are left out
        assert parsed.entries[0].author == "<Ann & Bob>"


def test_the_scheduler_task_publishes_due_posts_by_the_services_clock(site):
    publish_at = (datetime.now(UTC) + timedelta(hours=4)).replace(microsecond=0)
    post = site.draft()
    site.editor.post(f"/api/blog/posts/{post['id']}/schedule", json={"publish_at": publish_at.isoformat()})

    async def run_task(services):
        task = next(t for t in services.periodic_tasks() if t.name == "blog.publish_due")
        services.blog.clock = lambda: publish_at.replace(tzinfo=None) + timedelta(seconds=30)
        await task.run(datetime.now(UTC).replace(tzinfo=None))
        return task.interval_seconds

    assert site.in_process(run_task) == 30
    assert site.anonymous.get(f"/api/blog/posts/{post['slug']}").status_code == 200


def _metrics_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _publish_due_runs(port: int) -> float:
    """A `vedina worker`'s count of blog.publish_due ticks it ran (from its /metrics)."""
    scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(scrape)
               for sample in family.samples
               if sample.name == "vedina_scheduled_task_runs_total" and sample.labels.get("task") == "blog.publish_due")


def test_vedina_worker_processes_publish_a_due_post_once_by_their_scheduler(site, tmp_path):
    """No call of the task here: two `vedina worker` processes (the real profile's server runs no
    scheduler) run the scheduler, and a post that fell due is published by exactly one of them, once."""
    if site.settings.storage_profile != "real":
        pytest.skip("the embedded server runs the scheduler itself (tests/jobs/test_scheduler.py)")
    publish_at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    post = site.draft(title=f"Due {uuid.uuid4().hex[:6]}")
    scheduled = site.editor.post(f"/api/blog/posts/{post['id']}/schedule", json={"publish_at": publish_at.isoformat()},
                                 headers={"if-match": '"1"'})
    assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled", scheduled.text
    assert site.anonymous.get(f"/api/blog/posts/{post['slug']}").status_code == 404
    time.sleep(max(0.0, (publish_at - datetime.now(UTC)).total_seconds()) + 1)  # due before any worker starts

    ports = [free_port() for _ in range(2)]
    started = time.time()
    workers = [subprocess.Popen([VEDINA, "worker"], env={**os.environ, **site.env, "LOG_LEVEL": "info",
                                                          "WORKER_METRICS_PORT": str(port)},
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / f"worker-{port}.log", "wb"))
               for port in ports]
    try:
        for port, worker in zip(ports, workers, strict=True):  # up (its signal handlers are set before /metrics)
            wait_for(lambda: worker.poll() is None and _metrics_up(port), timeout=30, what=f"worker {worker.pid}")
        # The tick interval is 30 s: the first leader's first poll claims the current tick.
        wait_for(lambda: site.anonymous.get(f"/api/blog/posts/{post['slug']}").status_code == 200, timeout=60,
                 what="the scheduled post published by the workers' scheduler")
        assert all(worker.poll() is None for worker in workers)
        runs = [_publish_due_runs(port) for port in ports]
        ticks = math.floor(time.time() / 30) - math.floor(started / 30) + 1
        assert 1 <= sum(runs) <= ticks, (runs, ticks)  # one run per tick between them, not one each
        lease = site.query(sa.select(scheduler_leases))
        assert len(lease) == 1 and lease[0]["expires_at"] > datetime.now(UTC).replace(tzinfo=None)
        assert int(lease[0]["holder"].split(":")[-2]) in {worker.pid for worker in workers}
        task = site.query(sa.select(scheduled_tasks).where(scheduled_tasks.c.name == "blog.publish_due"))[0]
        assert task["started_at"] is not None and task["last_error"] is None
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                assert worker.wait(timeout=30) == 0, f"worker {worker.pid} failed: see {tmp_path}"
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
                raise

    row = site.query(sa.select(blog_posts).where(blog_posts.c.id == post["id"]))[0]
    assert row["status"] == "published" and row["version"] == 3 and row["published_at"] >= publish_at.replace(
        tzinfo=None)
    revisions = site.editor.get(f"/api/blog/editor/posts/{post['id']}/revisions").json()["items"]
    assert [r["version"] for r in revisions] == [3, 2, 1], "published once: one revision by the scheduler"
    assert revisions[0]["editor_id"] is None and all(r["editor_id"] is not None for r in revisions[1:])
