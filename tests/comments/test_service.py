"""CommentService and ModerationService on both storage profiles: threads, counts under concurrency,
duplicates, the edit window, tombstones, visibility, reports, bans, the log, caching, bad input."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec
import pytest
import sqlalchemy as sa

from tests.comments.conftest import count_rows, make_movie, make_user, rows, visible_count
from tests.security.test_markup import PAYLOADS, assert_inert
from tests.viewers.conftest import StatementCounter
from vedina.errors import Conflict, NotFound, Refused, TooManyRequests, ValidationFailed
from vedina.services.comment_limits import CommentRateLimit
from vedina.services.comments import Reader
from vedina.storage.schema import comment_reports, comments, moderation_actions, movies


async def viewer(services, resources, name: str = "Viewer"):
    """A new account's main profile."""
    user_id = await make_user(resources.engine, name)
    return await services.profiles.current(user_id=user_id, profile_id=None)


async def page(services, movie_id: int, reader: Reader | None = None, **options):
    options = {"order": "newest", "limit": 20, "cursor": None, **options}
    return await services.comments.threads(movie_id=movie_id, reader=reader or Reader(), **options)


async def post(services, profile, movie_id: int, body: str, **options):
    return await services.comments.post(profile=profile, movie_id=movie_id, body=body,
                                        spoiler=options.get("spoiler", False), parent_id=options.get("parent_id"))


async def test_a_reply_to_a_reply_joins_the_top_level_thread_and_keeps_its_parent(services, resources):
    movie = await make_movie(resources.engine)
    ann, bob = await viewer(services, resources, "Ann"), await viewer(services, resources, "Bob")
    top = await post(services, ann, movie, "What an *ending*")
    reply = await post(services, bob, movie, "Agreed", parent_id=top.id)
    nested = await post(services, ann, movie, "Right?", parent_id=reply.id)
    assert (reply.parent_id, reply.root_id) == (top.id, top.id)
    assert (nested.parent_id, nested.root_id) == (reply.id, top.id)

    listed = await page(services, movie, Reader.of(ann))
    assert [t.id for t in listed.items] == [top.id] and listed.count == 3
    thread = listed.items[0]
    assert [(r.id, r.parent_id) for r in thread.replies] == [(reply.id, top.id), (nested.id, reply.id)]
    assert thread.reply_count == 2 and thread.body_html == "<p>What an <em>ending</em></p>"
    assert thread.mine and not thread.replies[0].mine and thread.replies[1].mine
    assert thread.author_name == "Main" and thread.user_id is None  # user ids are for moderators


async def test_thread_pages_go_newest_or_oldest_first_with_cursors(services, resources):
    movie = await make_movie(resources.engine)
    ann = await viewer(services, resources)
    made = [(await post(services, ann, movie, f"comment {i}")).id for i in range(5)]
    first = await page(services, movie, limit=2)
    second = await page(services, movie, limit=2, cursor=first.next_cursor)
    third = await page(services, movie, limit=2, cursor=second.next_cursor)
    assert [t.id for p in (first, second, third) for t in p.items] == made[::-1]
    assert third.next_cursor is None
    oldest = await page(services, movie, order="oldest", limit=3)
    rest = await page(services, movie, order="oldest", limit=3, cursor=oldest.next_cursor)
    assert [t.id for t in oldest.items + rest.items] == made
    with pytest.raises(ValidationFailed) as refused:  # a newest-first cursor on an oldest-first listing
        await page(services, movie, order="oldest", cursor=first.next_cursor)
    assert refused.value.details == {"field": "cursor"}
    for bad in ("", "x1", "n", "n-1", "n99999999999999999999", "1"):
        with pytest.raises(ValidationFailed) as refused:
            await page(services, movie, cursor=bad)
        assert refused.value.details == {"field": "cursor"}
    with pytest.raises(ValidationFailed) as refused:
        await page(services, movie, order="random")
    assert refused.value.details == {"field": "order"}


async def test_concurrent_posts_hides_and_deletes_keep_the_movie_count_exact(services, resources):
    movie = await make_movie(resources.engine)
    authors = [await viewer(services, resources) for _ in range(6)]
    posted = await asyncio.gather(*(post(services, authors[i % 6], movie, f"take {i}") for i in range(24)))
    assert await visible_count(resources.engine, movie) == 24 == await count_rows(resources.engine, movie)
    moderator = await make_user(resources.engine, "Mod")
    changes = [services.moderation.hide(actor_id=moderator, comment_id=c.id, reason="r") for c in posted[:4]]
    changes += [services.moderation.hide(actor_id=moderator, comment_id=posted[0].id, reason="twice")]
    changes += [services.comments.delete(profile=authors[i % 6], comment_id=posted[i].id) for i in range(4, 8)]
    changes += [post(services, authors[i % 6], movie, f"more {i}") for i in range(6)]
    results = await asyncio.gather(*changes, return_exceptions=True)
    assert sum(isinstance(r, Conflict) for r in results) == 1  # the second hide of one comment
    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, Conflict)]
    await services.comments.delete(profile=authors[0], comment_id=posted[0].id)  # hidden, then deleted: no change
    stored = await rows(resources.engine, sa.select(comments.c.status).where(comments.c.movie_id == movie))
    visible = sum(r["status"] == "visible" for r in stored)
    assert visible == 24 - 8 + 6 == await visible_count(resources.engine, movie)
    assert (await page(services, movie)).count == visible


async def test_the_same_account_posting_the_same_text_within_ten_minutes_is_a_duplicate(services, resources):
    movie, other_movie = await make_movie(resources.engine), await make_movie(resources.engine)
    ann, bob = await viewer(services, resources), await viewer(services, resources)
    await post(services, ann, movie, "Great   film")
    with pytest.raises(Conflict) as refused:
        await post(services, ann, movie, "  great film\n")
    assert refused.value.code == "duplicate_comment" and refused.value.details == {"field": "body"}
    await post(services, bob, movie, "Great film")  # another profile
    await post(services, ann, other_movie, "Great film")  # another movie
    services.comments.clock.advance(minutes=11)
    await post(services, ann, movie, "Great film")
    assert await count_rows(resources.engine, movie) == 3


async def test_an_author_edits_within_fifteen_minutes_and_the_edit_is_marked(services, resources):
    movie = await make_movie(resources.engine)
    ann = await viewer(services, resources)
    comment = await post(services, ann, movie, "first take")
    assert comment.edited_at is None
    services.comments.clock.advance(minutes=14)
    edited = await services.comments.edit(profile=ann, comment_id=comment.id, body="**second** take", spoiler=True)
    assert edited.edited_at == services.comments.clock.now and edited.spoiler
    assert (edited.body_source, edited.body_html) == ("**second** take", "<p><strong>second</strong> take</p>")
    services.comments.clock.advance(minutes=2)
    with pytest.raises(Conflict) as refused:
        await services.comments.edit(profile=ann, comment_id=comment.id, body="third take", spoiler=None)
    assert refused.value.code == "edit_window_closed"
    assert (await page(services, movie)).items[0].body_source == "**second** take"
    with pytest.raises(ValidationFailed) as refused:
        await services.comments.edit(profile=ann, comment_id=comment.id, body=None, spoiler=None)
    assert refused.value.details == {"field": "body"}


async def test_only_the_author_profile_edits_or_deletes_a_comment(services, resources):
    movie = await make_movie(resources.engine)
    ann, bob = await viewer(services, resources), await viewer(services, resources)
    kids = await services.profiles.create(user_id=ann.user_id, name="Kids", max_age_rating="PG")
    comment = await post(services, ann, movie, "mine")
    for profile in (bob, kids):  # another account; another profile of the same account
        with pytest.raises(Refused) as refused:
            await services.comments.edit(profile=profile, comment_id=comment.id, body="theirs", spoiler=None)
        assert refused.value.code == "not_author"
        with pytest.raises(Refused):
            await services.comments.delete(profile=profile, comment_id=comment.id)
    stored = await rows(resources.engine, sa.select(comments).where(comments.c.id == comment.id))
    assert stored[0]["body_source"] == "mine" and stored[0]["status"] == "visible" and stored[0]["edited_at"] is None


async def test_a_deleted_comment_is_a_tombstone_that_keeps_its_thread(services, resources):
    movie = await make_movie(resources.engine)
    ann, bob = await viewer(services, resources), await viewer(services, resources)
    top = await post(services, ann, movie, "to be deleted")
    await post(services, bob, movie, "a reply", parent_id=top.id)
    await services.comments.delete(profile=ann, comment_id=top.id)
    await services.comments.delete(profile=ann, comment_id=top.id)  # again: nothing changes
    listed = await page(services, movie, Reader.of(ann))
    thread = listed.items[0]
    assert (thread.status, thread.body_source, thread.body_html) == ("deleted", None, None)
    assert [r.body_source for r in thread.replies] == ["a reply"] and listed.count == 1
    stored = (await rows(resources.engine, sa.select(comments).where(comments.c.id == top.id)))[0]
    assert stored["body_source"] == "" and stored["body_html"] == "" and stored["deleted_at"] is not None
    with pytest.raises(Conflict) as refused:
        await services.comments.edit(profile=ann, comment_id=top.id, body="back", spoiler=None)
    assert refused.value.code == "comment_deleted"
    with pytest.raises(NotFound):  # no replies to a tombstone
        await post(services, bob, movie, "late reply", parent_id=top.id)


async def test_a_hidden_comment_has_no_body_except_for_its_author_and_moderators(services, resources):
    movie = await make_movie(resources.engine)
    ann, bob = await viewer(services, resources), await viewer(services, resources)
    comment = await post(services, ann, movie, "rude words")
    moderator = await make_user(resources.engine, "Mod")
    hidden = await services.moderation.hide(actor_id=moderator, comment_id=comment.id, reason="insults")
    assert hidden.status == "hidden" and hidden.user_id == ann.user_id
    as_author = await services.comments.get(comment_id=comment.id, reader=Reader.of(ann))
    assert (as_author.status, as_author.body_source, as_author.hidden_reason) == ("hidden", "rude words", "insults")
    for reader in (Reader.of(bob), Reader()):
        seen = (await page(services, movie, reader)).items[0]
        assert (seen.status, seen.body_source, seen.body_html, seen.hidden_reason) == ("hidden", None, None, None)
    as_moderator = await services.comments.get(comment_id=comment.id, reader=Reader(moderator=True))
    assert as_moderator.body_source == "rude words" and as_moderator.hidden_reason == "insults"
    assert (await page(services, movie)).count == 0
    with pytest.raises(Conflict) as refused:
        await services.comments.edit(profile=ann, comment_id=comment.id, body="nice words", spoiler=None)
    assert refused.value.code == "comment_hidden"
    restored = await services.moderation.restore(actor_id=moderator, comment_id=comment.id, reason="appeal")
    assert restored.status == "visible" and restored.hidden_reason is None
    assert (await page(services, movie, Reader.of(bob))).items[0].body_source == "rude words"
    assert (await page(services, movie)).count == 1


async def test_comments_on_movies_the_profile_may_not_see_are_not_found(services, resources):
    draft = await make_movie(resources.engine, status="draft")
    rated_r = await make_movie(resources.engine, rating="R")
    closed = await make_movie(resources.engine)
    async with resources.engine.begin() as conn:
        await conn.execute(sa.update(movies).where(movies.c.id == closed).values(
            available_until=services.comments.clock.now - timedelta(days=1)))
    await services.catalog.movies_changed(closed)
    ann = await viewer(services, resources)
    kids = await services.profiles.create(user_id=ann.user_id, name="Kids", max_age_rating="PG")
    adult_comment = await post(services, ann, rated_r, "for grown-ups")
    for profile, movie in ((ann, draft), (ann, closed), (kids, rated_r), (ann, 2**62)):
        with pytest.raises(NotFound):
            await post(services, profile, movie, "hello")
        with pytest.raises(NotFound):
            await page(services, movie, Reader.of(profile))
    for call in (services.comments.get(comment_id=adult_comment.id, reader=Reader.of(kids)),
                 services.comments.report(profile=kids, comment_id=adult_comment.id, reason="spam", note=""),
                 services.comments.get(comment_id=2**62, reader=Reader())):
        with pytest.raises(NotFound):
            await call
    assert await count_rows(resources.engine, draft) == 0 and await count_rows(resources.engine, closed) == 0


async def test_replies_need_a_visible_parent_on_the_same_movie(services, resources):
    movie, other = await make_movie(resources.engine), await make_movie(resources.engine)
    ann = await viewer(services, resources)
    elsewhere = await post(services, ann, other, "on another movie")
    for parent_id in (elsewhere.id, 2**62):
        with pytest.raises(NotFound) as refused:
            await post(services, ann, movie, "reply", parent_id=parent_id)
        assert refused.value.details["field"] == "parent_id"
    assert await count_rows(resources.engine, movie) == 0 and await visible_count(resources.engine, movie) == 0


async def test_reports_queue_hide_and_the_moderation_log(services, resources):
    movie = await make_movie(resources.engine)
    ann, bob, cid = [await viewer(services, resources) for _ in range(3)]
    once = await post(services, ann, movie, "mildly annoying")
    twice = await post(services, ann, movie, "really annoying")
    with pytest.raises(Conflict) as refused:
        await services.comments.report(profile=ann, comment_id=once.id, reason="spam", note="")
    assert refused.value.code == "own_comment"
    await services.comments.report(profile=bob, comment_id=once.id, reason="spam", note="")
    await services.comments.report(profile=bob, comment_id=twice.id, reason="abuse", note="<b>rude</b>")
    await services.comments.report(profile=cid, comment_id=twice.id, reason="other", note="")
    kids = await services.profiles.create(user_id=bob.user_id, name="Kids", max_age_rating=None)
    with pytest.raises(Conflict) as refused:  # one report per account, whatever the profile
        await services.comments.report(profile=kids, comment_id=twice.id, reason="spam", note="")
    assert refused.value.code == "already_reported"

    queue = await services.moderation.queue(limit=1, cursor=None)
    rest = await services.moderation.queue(limit=1, cursor=queue.next_cursor)
    assert [i.comment.id for i in queue.items + rest.items] == [twice.id, once.id] and rest.next_cursor is None
    assert [(r.reason, r.note) for r in queue.items[0].reports] == [("abuse", "<b>rude</b>"), ("other", "")]
    assert queue.items[0].comment.report_count == 2

    moderator = await make_user(resources.engine, "Mod")
    await services.moderation.hide(actor_id=moderator, comment_id=twice.id, reason="abusive")
    await services.moderation.dismiss(actor_id=moderator, comment_id=once.id, reason="not spam")
    assert (await services.moderation.queue(limit=10, cursor=None)).items == []
    open_reports = await rows(resources.engine, sa.select(comment_reports).where(comment_reports.c.resolved_at.is_(None)))
    assert open_reports == []
    with pytest.raises(Conflict) as refused:
        await services.moderation.dismiss(actor_id=moderator, comment_id=once.id, reason="again")
    assert refused.value.code == "no_open_reports"
    with pytest.raises(Conflict) as refused:
        await services.moderation.restore(actor_id=moderator, comment_id=once.id, reason="not hidden")
    assert refused.value.code == "not_hidden"

    log = await services.moderation.log(limit=10, cursor=None)
    assert [(a.actor_id, a.action, a.target_type, a.target_id, a.reason) for a in log.items] == [
        (moderator, "dismiss_reports", "comment", once.id, "not spam"),
        (moderator, "hide", "comment", twice.id, "abusive"),
    ]
    assert all(a.created_at == services.moderation.clock.now for a in log.items)
    for bad in ("x", "1-", "-1", "1" * 19):
        with pytest.raises(ValidationFailed):
            await services.moderation.queue(limit=1, cursor=bad)
        with pytest.raises(ValidationFailed):
            await services.moderation.log(limit=1, cursor=bad)


async def test_a_banned_user_cannot_post_or_edit_until_the_ban_ends_or_is_lifted(services, resources):
    movie = await make_movie(resources.engine)
    ann = await viewer(services, resources)
    comment = await post(services, ann, movie, "before the ban")
    moderator = await make_user(resources.engine, "Mod")
    ban = await services.moderation.ban(actor_id=moderator, user_id=ann.user_id, reason="trolling", days=1)
    for call in (post(services, ann, movie, "during"),
                 services.comments.edit(profile=ann, comment_id=comment.id, body="edited", spoiler=None)):
        with pytest.raises(Refused) as refused:
            await call
        assert refused.value.code == "comment_banned" and refused.value.details == {"until": ban.until.isoformat()}
    services.comments.clock.advance(days=1, seconds=1)
    await post(services, ann, movie, "after the ban")
    await services.moderation.ban(actor_id=moderator, user_id=ann.user_id, reason="again", days=30)
    await services.moderation.unban(actor_id=moderator, user_id=ann.user_id, reason="apology")
    await post(services, ann, movie, "after the unban")
    with pytest.raises(NotFound):
        await services.moderation.unban(actor_id=moderator, user_id=ann.user_id, reason="no ban")
    with pytest.raises(NotFound) as refused:
        await services.moderation.ban(actor_id=moderator, user_id=2**62, reason="nobody", days=1)
    assert refused.value.details["field"] == "user_id"
    for options in ({}, {"days": 1, "until": services.moderation.clock.now + timedelta(days=2)},
                    {"until": services.moderation.clock.now - timedelta(days=1)},
                    {"until": services.moderation.clock.now + timedelta(days=4000)}):
        with pytest.raises(ValidationFailed):
            await services.moderation.ban(actor_id=moderator, user_id=ann.user_id, reason="bad", **options)
    actions = await rows(resources.engine, sa.select(moderation_actions.c.action).order_by(moderation_actions.c.id))
    assert [a["action"] for a in actions] == ["ban", "ban", "unban"]


async def test_posting_past_the_profile_budget_is_429_and_other_profiles_keep_theirs(services, resources, settings):
    movie = await make_movie(resources.engine)
    ann, bob = await viewer(services, resources), await viewer(services, resources)
    services.comments._limit = CommentRateLimit(msgspec.structs.replace(settings, rate_limit_comments="3/1h burst 3"))
    for i in range(3):
        await post(services, ann, movie, f"quick {i}")
    with pytest.raises(TooManyRequests) as refused:
        await post(services, ann, movie, "one too many")
    assert refused.value.details["policy"] == "comments" and refused.value.details["retry_after"] > 0
    assert int(refused.value.headers["retry-after"]) > 0
    await post(services, bob, movie, "mine still goes")
    assert await count_rows(resources.engine, movie) == 4


async def test_thread_pages_are_served_from_memory_until_a_write_invalidates_them(services, resources):
    resources.invalidations.start()  # as a serving worker does: near caches are trusted once subscribed
    await resources.invalidations.ready()
    movie = await make_movie(resources.engine)
    ann = await viewer(services, resources)
    await post(services, ann, movie, "first")
    await page(services, movie)
    with StatementCounter(resources.engine, "comments") as reads:
        again = await page(services, movie)
    assert reads.count == 0 and again.count == 1
    await post(services, ann, movie, "second")
    assert [t.body_source for t in (await page(services, movie)).items] == ["second", "first"]
    moderator = await make_user(resources.engine, "Mod")
    await services.moderation.hide(actor_id=moderator, comment_id=again.items[0].id, reason="r")
    assert [t.status for t in (await page(services, movie)).items] == ["visible", "hidden"]


async def test_every_xss_payload_is_stored_verbatim_and_served_inert(services, resources):
    movie = await make_movie(resources.engine)
    ann = await viewer(services, resources)
    for payload in PAYLOADS:  # some differ only in case: past the duplicate window each time
        await post(services, ann, movie, payload)
        services.comments.clock.advance(minutes=11)
    sql = "'; DROP TABLE comments; -- \" OR 1=1"
    await post(services, ann, movie, sql)
    listed = await page(services, movie, limit=50)
    listed.items += (await page(services, movie, limit=50, cursor=listed.next_cursor)).items
    by_source = {t.body_source: t.body_html for t in listed.items}
    assert len(by_source) == len(PAYLOADS) + 1
    for payload in PAYLOADS:
        assert payload.strip() in by_source
        assert_inert(by_source[payload.strip()])
    assert by_source[sql] == "<p>'; DROP TABLE comments; -- \" OR 1=1</p>"


@pytest.mark.parametrize("body", ["", "   ", "\n\t\n", "x" * 5001, "bell \x07 ring", "nul \x00"])
async def test_a_bad_body_is_refused_naming_the_field_and_nothing_is_written(services, resources, body):
    movie = await make_movie(resources.engine)
    ann = await viewer(services, resources)
    with pytest.raises(ValidationFailed) as refused:
        await post(services, ann, movie, body)
    assert refused.value.details == {"field": "body"}
    assert await count_rows(resources.engine, movie) == 0 and await visible_count(resources.engine, movie) == 0
