"""``vedina demo-data``: add the demo movies that are not there yet."""

from __future__ import annotations

from vedina.composition import open_services
from vedina.config import Settings
from vedina.demo.catalog import ensure_genres, generate_catalog
from vedina.demo.media import make_clip, write_subtitles
from vedina.errors import Conflict
from vedina.jobs import media_probe
from vedina.storage import search
from vedina.storage.clock import utcnow
from vedina.storage.movies import MovieRepository
from vedina.storage.outbox import enqueue

CLIP_SECONDS = 8

DEMO_MOVIES = [
    {
        "slug": "color-bars",
        "title": "The Color Bars",
        "synopsis": "Seven stripes wait for a signal that never comes.",
        "release_year": 1953,
        "maturity_rating": "G",
        "genres": ["drama", "documentary"],
        "source": "smptehdbars",
        "tone": 440,
        "faststart": True,
    },
    {
        "slug": "mandelbrot-nights",
        "title": "Mandelbrot Nights",
        "synopsis": "A detective zooms into a city that repeats itself forever.",
        "release_year": 1985,
        "maturity_rating": "PG-13",
        "genres": ["mystery", "sci-fi"],
        "source": "mandelbrot",
        "tone": 330,
        "faststart": True,
    },
    {
        "slug": "game-of-life",
        "title": "Game of Life",
        "synopsis": "Cells are born, cells die, and a glider finds its way home.",
        "release_year": 1970,
        "maturity_rating": "PG",
        "genres": ["animation", "family"],
        "source": "life=mold=10:ratio=0.1:death_color=#202040:life_color=#80e0ff",
        "tone": 523,
        "faststart": False,  # moov atom last: players must range-request the tail
    },
    {
        "slug": "test-pattern-2",
        "title": "Test Pattern 2: The Return",
        "synopsis": "The pattern is back, and this time it counts frames.",
        "release_year": 2004,
        "maturity_rating": "R",
        "genres": ["action"],
        "source": "testsrc2",
        "tone": 262,
        "faststart": True,
    },
]


# Plans on offer in the demo (amounts in cents): subscribe with the provider's test card pm_card_visa.
DEMO_PLANS = [
    {"code": "basic-monthly", "name": "Basic", "tier": "basic", "price_minor": 799, "screens": 1, "max_height": 720,
     "trial_days": 0},
    {"code": "standard-monthly", "name": "Standard", "tier": "standard", "price_minor": 1299, "screens": 2,
     "max_height": 1080, "trial_days": 7},
    {"code": "premium-monthly", "name": "Premium", "tier": "premium", "price_minor": 1899, "screens": 4,
     "max_height": 2160, "trial_days": 0},
]


async def add_demo_plans(services) -> int:
    """The demo plans that are not there yet (by code); returns how many were added."""
    existing = {plan.code for plan in (await services.plans.list()).items}
    added = 0
    for plan in DEMO_PLANS:
        if plan["code"] in existing:
            continue
        terms = {name: plan[name] for name in ("price_minor", "screens", "max_height", "trial_days")}
        try:
            await services.plans.create(code=plan["code"], name=plan["name"], tier=plan["tier"], active=True,
                                        description=f"{plan['name']} plan, billed monthly",
                                        terms={**terms, "currency": "usd", "billing_period": "month"})
        except Conflict:  # withdrawn by an admin (inactive): left as it is
            continue
        added += 1
    return added


async def load_demo_data(settings: Settings, *, generated: int = 0, seed: int = 7) -> int:
    services = await open_services(settings)
    resources = services.resources
    added: list[int] = []
    try:
        await add_demo_plans(services)
        for movie in DEMO_MOVIES:
            if await services.movies.get_by_slug(movie["slug"]) is not None:
                continue
            video = f"demo/{movie['slug']}.mp4"
            subtitles = f"demo/{movie['slug']}.en.vtt"
            make_clip(settings.media_dir / video, source=movie["source"], tone_hz=movie["tone"],
                      seconds=CLIP_SECONDS, faststart=movie["faststart"])
            write_subtitles(settings.media_dir / subtitles, title=movie["title"], seconds=CLIP_SECONDS)
            async with resources.engine.begin() as conn:
                movie_id = await MovieRepository.insert(
                    conn,
                    slug=movie["slug"], title=movie["title"], synopsis=movie["synopsis"],
                    release_year=movie["release_year"], maturity_rating=movie["maturity_rating"],
                    genres=movie["genres"], spoken_languages=["en"], subtitle_languages=["en"],
                    status="published", published_at=utcnow(), sort_title=movie["title"].lower(),
                )
                genre_ids = await ensure_genres(conn)
                await MovieRepository.set_genres(conn, movie_id, [genre_ids[g] for g in movie["genres"]])
                await MovieRepository.set_languages(conn, movie_id, spoken=["en"], subtitle=["en"])
                await search.add_to_vocabulary(conn, [movie["title"]])
                video_id = await MovieRepository.insert_asset(
                    conn, movie_id=movie_id, kind="video", path=video, content_type="video/mp4",
                    label="moov first" if movie["faststart"] else "moov last",
                )
                await MovieRepository.insert_asset(
                    conn, movie_id=movie_id, kind="subtitle", path=subtitles, content_type="text/vtt",
                    language="en", label="English",
                    size_bytes=(settings.media_dir / subtitles).stat().st_size,
                )
                # Same transaction: the probe job exists exactly when the asset does.
                await enqueue(conn, topic=media_probe.TOPIC, payload={"asset_id": video_id})
            added.append(movie_id)
        if generated:
            clips = [f"demo/{movie['slug']}.mp4" for movie in DEMO_MOVIES]
            seconds = await generate_catalog(resources.engine, count=generated, seed=seed, clips=clips)
            print(f"demo data: {generated} generated movie(s) in {seconds:.1f} s")
        if added or generated:
            await services.catalog.movies_changed(*added)  # servers already running drop their pages
        # Embedded profile: run the queued probes now; with RabbitMQ this
        # publishes them for `vedina worker`.
        while await resources.relay.relay_once():
            pass
    finally:
        await services.close()
    return len(added)
