"""A plain FastAPI peer with Vedina's three read endpoints, on Vedina's own tables.

What a usual FastAPI service does, with no cache of its own:

- ``GET /api/movies/{id}``: the movie row, then its ``media_assets`` rows (two
  SELECTs on one pooled connection);
- ``GET /api/movies?offset=&limit=``: a page of movies (default 20) and the
  total count (two SELECTs);
- ``GET /api/users/me``: the bearer JWT verified with PyJWT (HS256, the key
  chosen by the token's ``kid`` among ``JWT_SIGNING_KEYS``; signature, exp,
  iss and aud checked as Vedina does), then the session checked, then the
  user row SELECTed. The session check is one Redis GET of
  ``bench:session:<sid>`` when ``REDIS_URL`` is set (the real profile),
  filled from the ``sessions`` table on a miss (cache-aside, 300 s); without
  Redis (the embedded profile: SQLite and nothing else) it is one SELECT on
  the ``sessions`` table per request.

Environment: ``DATABASE_URL`` (an async SQLAlchemy URL, password included:
``sqlite+aiosqlite:///...`` or ``mysql+asyncmy://...``), ``JWT_SIGNING_KEYS``
(Vedina's format, ``kid:base64url-secret,...``) and ``REDIS_URL`` (optional).
``benches/load/bench_api.py`` runs it from the repository root with

    uvicorn benches.peers.fastapi_app:app --workers 2 --loop uvloop --http httptools

(uvicorn sets TCP_NODELAY only with uvloop and httptools; without them every
answer waits ~40 ms for Nagle).
"""

from __future__ import annotations

import base64
import os
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import jwt
import redis.asyncio as redis
import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import create_async_engine

SESSION_PREFIX = "bench:session:"
SESSION_TTL_S = 300
MAX_PAGE = 100

_tables = sa.MetaData()
movies = sa.Table(
    "movies", _tables,
    sa.Column("id", sa.BigInteger, primary_key=True), sa.Column("slug", sa.String), sa.Column("title", sa.String),
    sa.Column("synopsis", sa.Text), sa.Column("release_year", sa.Integer), sa.Column("duration_seconds", sa.Integer),
    sa.Column("maturity_rating", sa.String), sa.Column("genres", sa.JSON),
)
media_assets = sa.Table(
    "media_assets", _tables,
    sa.Column("id", sa.BigInteger, primary_key=True), sa.Column("movie_id", sa.BigInteger),
    sa.Column("kind", sa.String), sa.Column("content_type", sa.String), sa.Column("size_bytes", sa.BigInteger),
    sa.Column("language", sa.String), sa.Column("label", sa.String),
)
users = sa.Table(
    "users", _tables,
    sa.Column("id", sa.BigInteger, primary_key=True), sa.Column("email", sa.String),
    sa.Column("display_name", sa.String), sa.Column("role", sa.String), sa.Column("status", sa.String),
    sa.Column("email_verified_at", sa.DateTime), sa.Column("created_at", sa.DateTime),
)
sessions = sa.Table(
    "sessions", _tables,
    sa.Column("id", sa.BigInteger, primary_key=True), sa.Column("family_id", sa.String),
    sa.Column("expires_at", sa.DateTime), sa.Column("rotated_at", sa.DateTime), sa.Column("revoked_at", sa.DateTime),
)
ASSET_COLUMNS = [c for c in media_assets.c if c.name != "movie_id"]


def signing_keys(text: str) -> dict[str, bytes]:
    """``kid:base64url-secret,...`` -> {kid: secret}."""
    keys = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kid, _, secret = item.partition(":")
        keys[kid] = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    return keys


def engine_for(url: str):
    if url.startswith("sqlite"):
        return create_async_engine(url)
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_recycle=1800)


KEYS = signing_keys(os.environ.get("JWT_SIGNING_KEYS", ""))
engine = engine_for(os.environ["DATABASE_URL"])
cache = redis.from_url(os.environ["REDIS_URL"]) if os.environ.get("REDIS_URL") else None


@asynccontextmanager
async def lifespan(_app: FastAPI):
    yield
    if cache is not None:
        await cache.aclose()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
bearer = HTTPBearer()


def access_claims(credentials: HTTPAuthorizationCredentials = Depends(bearer)) -> dict:
    token = credentials.credentials
    try:
        key = KEYS[jwt.get_unverified_header(token).get("kid")]
        claims = jwt.decode(
            token, key, algorithms=["HS256"], issuer="vedina", audience="vedina-api", leeway=10,
            options={"require": ["exp", "sub", "sid"]},
        )
    except (KeyError, jwt.PyJWTError):
        raise HTTPException(401, "Invalid or expired access token") from None
    if claims.get("typ") != "access":
        raise HTTPException(401, "Invalid or expired access token")
    return claims


async def session_active(sid: str) -> bool:
    if cache is not None:
        cached = await cache.get(SESSION_PREFIX + sid)
        if cached is not None:
            return cached == b"active"
    now = datetime.now(UTC).replace(tzinfo=None)
    query = sa.select(sessions.c.id).where(
        sessions.c.family_id == sid, sessions.c.rotated_at.is_(None), sessions.c.revoked_at.is_(None),
        sessions.c.expires_at > now,
    ).limit(1)
    async with engine.connect() as conn:
        active = (await conn.execute(query)).first() is not None
    if cache is not None:
        await cache.set(SESSION_PREFIX + sid, b"active" if active else b"revoked", ex=SESSION_TTL_S)
    return active


@app.get("/api/movies/{movie_id}")
async def get_movie(movie_id: int) -> dict:
    async with engine.connect() as conn:
        movie = (await conn.execute(sa.select(movies).where(movies.c.id == movie_id))).mappings().first()
        if movie is None:
            raise HTTPException(404, "No such movie")
        assets = await conn.execute(
            sa.select(*ASSET_COLUMNS).where(media_assets.c.movie_id == movie_id).order_by(media_assets.c.id)
        )
        return {**movie, "assets": [dict(row) for row in assets.mappings()]}


@app.get("/api/movies")
async def list_movies(offset: int = 0, limit: int = 20) -> dict:
    if not (offset >= 0 and 1 <= limit <= MAX_PAGE):
        raise HTTPException(422, f"offset must be >= 0 and limit between 1 and {MAX_PAGE}")
    page = sa.select(movies).order_by(movies.c.id).offset(offset).limit(limit)
    async with engine.connect() as conn:
        items = [dict(row) for row in (await conn.execute(page)).mappings()]
        total = (await conn.execute(sa.select(sa.func.count()).select_from(movies))).scalar_one()
    return {"items": items, "total": total, "offset": offset, "limit": limit}


@app.get("/api/users/me")
async def get_me(claims: dict = Depends(access_claims)) -> dict:
    if not await session_active(str(claims["sid"])):
        raise HTTPException(401, "Access token revoked")
    query = sa.select(users).where(users.c.id == int(claims["sub"]))
    async with engine.connect() as conn:
        user = (await conn.execute(query)).mappings().first()
    if user is None or user["status"] == "deleted":
        raise HTTPException(404, "No such user")
    if user["status"] != "active":
        raise HTTPException(403, "This account is suspended")
    public = {key: user[key] for key in ("id", "email", "display_name", "role", "status", "created_at")}
    return {**public, "email_verified": user["email_verified_at"] is not None}
