"""The database schema: one SQLAlchemy Core metadata for MySQL/MariaDB and SQLite.

Alembic migrations (``migrations/versions``) create exactly these tables; a
test compares a migrated database with this metadata.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only autoincrements an INTEGER PRIMARY KEY.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def Exact(length: int) -> sa.types.TypeEngine:
    """A string compared byte for byte on every database.

    MariaDB/MySQL compare VARCHARs case- and accent-insensitively by default
    (``'Evt'='evt'``, ``'jose'='josé'``) where SQLite compares exactly; keys,
    identifiers and addresses must mean the same thing on both profiles.
    """
    return sa.String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb")

# -- catalog (migrations 0001, 0006) ---------------------------------------------------

# The status is the visibility switch of every viewer query: listing indexes
# start with it, so a page of published movies never reads drafts or deleted rows.
MOVIE_STATUSES = ("draft", "published", "deleted")
AGE_RATINGS = ("G", "PG", "PG-13", "R", "NC-17")  # in increasing order of restriction
PLAN_TIERS = ("basic", "standard", "premium")

movies = sa.Table(
    "movies",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("slug", sa.String(120), nullable=False, unique=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("original_title", sa.String(200), nullable=False, default=""),
    # Lower-cased, leading article moved to the end ("matrix, the"); compared byte for
    # byte, so "sort by title" and its keyset cursor mean the same on both databases.
    sa.Column("sort_title", Exact(200), nullable=False, default=""),
    sa.Column("synopsis", sa.Text(), nullable=False, default=""),
    sa.Column("release_year", sa.Integer(), nullable=True),
    sa.Column("runtime_minutes", sa.Integer(), nullable=True),  # the editor's figure
    sa.Column("duration_seconds", sa.Integer(), nullable=True),  # measured by media.probe
    sa.Column("maturity_rating", sa.String(8), nullable=False, default="G"),  # AGE_RATINGS
    sa.Column("genres", sa.JSON(), nullable=False),  # genre slugs, a copy of movie_genres for answers
    sa.Column("spoken_languages", sa.JSON(), nullable=False),  # BCP 47 tags; movie_languages indexes them
    sa.Column("subtitle_languages", sa.JSON(), nullable=False),
    sa.Column("poster_url", sa.String(500), nullable=True),
    sa.Column("backdrop_url", sa.String(500), nullable=True),
    sa.Column("available_from", sa.DateTime(), nullable=True),  # UTC; NULL: no bound
    sa.Column("available_until", sa.DateTime(), nullable=True),
    sa.Column("plan_tier", sa.String(16), nullable=False, default="basic"),  # PLAN_TIERS
    sa.Column("status", sa.String(16), nullable=False, default="draft"),  # MOVIE_STATUSES
    sa.Column("published_at", sa.DateTime(), nullable=True),
    sa.Column("deleted_at", sa.DateTime(), nullable=True),
    sa.Column("version", sa.Integer(), nullable=False, default=1),  # the ETag of If-Match edits
    # Credited people's names, kept by the catalog service: full-text search covers them.
    sa.Column("people_text", sa.Text(), nullable=False, default=""),
    sa.Column("popularity", sa.BigInteger(), nullable=False, default=0),  # playback starts
    sa.Column("rating_count", sa.Integer(), nullable=False, default=0),
    sa.Column("rating_sum", sa.Integer(), nullable=False, default=0),
    sa.Column("rating_avg", sa.Integer(), nullable=False, default=0),  # hundredths, for the sort index
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    # One index per sort order, each ending in id: keyset pages are index range scans.
    sa.Index("ix_movies_status_newest", "status", "published_at", "id"),
    sa.Index("ix_movies_status_title", "status", "sort_title", "id"),
    sa.Index("ix_movies_status_popularity", "status", "popularity", "id"),
    sa.Index("ix_movies_status_rating", "status", "rating_avg", "id"),
    sa.Index("ix_movies_status_year", "status", "release_year", "id"),
)
# Full-text search is outside this metadata (Alembic cannot describe it): a
# FULLTEXT index on MariaDB, an FTS5 table kept by triggers on SQLite; see
# migration 0006 and vedina.storage.search.
FULLTEXT_INDEX = "ft_movies_search"
FTS_TABLE = "movies_fts"


def outside_metadata(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic ``include_object``: False for the full-text objects the migrations keep by hand."""
    if type_ == "table" and name and name.startswith(FTS_TABLE):
        return False
    return not (type_ == "index" and name == FULLTEXT_INDEX)

genres = sa.Table(
    "genres",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("slug", Exact(64), nullable=False, unique=True),
    sa.Column("name", sa.String(100), nullable=False),
)

movie_genres = sa.Table(
    "movie_genres",
    metadata,
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("genre_id", Id, sa.ForeignKey("genres.id", ondelete="CASCADE"), primary_key=True),
    sa.Index("ix_movie_genres_genre_movie", "genre_id", "movie_id"),
)

people = sa.Table(
    "people",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

credits = sa.Table(
    "credits",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), nullable=False),
    sa.Column("person_id", Id, sa.ForeignKey("people.id", ondelete="CASCADE"), nullable=False),
    sa.Column("department", sa.String(8), nullable=False),  # cast | crew
    sa.Column("role", sa.String(100), nullable=False),  # the character, or the job ("Director")
    sa.Column("position", sa.Integer(), nullable=False),  # billing order
    sa.Index("ix_credits_movie_position", "movie_id", "department", "position"),
    sa.Index("ix_credits_person_movie", "person_id", "movie_id"),
)

movie_languages = sa.Table(
    "movie_languages",
    metadata,
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  # spoken | subtitle
    sa.Column("language", Exact(16), primary_key=True),
    sa.Index("ix_movie_languages_language_movie", "language", "movie_id"),
)

# The typo-tolerant fallback of search: every word of titles and people's names,
# by its trigrams ("matirx" shares "mat" with "matrix"); see vedina.storage.search.
search_trigrams = sa.Table(
    "search_trigrams",
    metadata,
    sa.Column("trigram", Exact(12), primary_key=True),  # 3 characters, up to 4 bytes each
    sa.Column("word", Exact(64), primary_key=True),
)

media_assets = sa.Table(
    "media_assets",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), nullable=False, index=True),
    # video (a source) | rendition (made from a source by media.transcode) | subtitle | poster | sprite
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("parent_id", Id, sa.ForeignKey("media_assets.id", ondelete="CASCADE"), nullable=True, index=True),
    sa.Column("path", sa.String(500), nullable=False),  # relative to MEDIA_ROOT
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=True),
    sa.Column("language", sa.String(16), nullable=True),
    sa.Column("label", sa.String(100), nullable=True),
    # pending (uploaded, not probed) | ready | failed (failure_reason says why)
    sa.Column("status", sa.String(16), nullable=False, default="ready"),
    sa.Column("failure_reason", sa.Text(), nullable=True),
    sa.Column("container", sa.String(64), nullable=True),
    sa.Column("video_codec", sa.String(32), nullable=True),
    sa.Column("audio_codec", sa.String(32), nullable=True),
    sa.Column("duration_ms", sa.BigInteger(), nullable=True),
    sa.Column("width", sa.Integer(), nullable=True),
    sa.Column("height", sa.Integer(), nullable=True),
    sa.Column("bitrate", sa.BigInteger(), nullable=True),
    sa.Column("checksum_sha256", Exact(64), nullable=True),
    # media.transcode of a source: none | queued | running | done | failed, and percent done
    sa.Column("transcode_status", sa.String(16), nullable=False, default="none"),
    sa.Column("transcode_progress", sa.Integer(), nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=True),
)

# tus 1.0 uploads in progress: the bytes are in a file under MEDIA_ROOT/uploads,
# the row holds what the protocol needs across requests, workers and restarts.
uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("id", Exact(32), primary_key=True),  # random hex, the URL's last segment
    sa.Column("owner_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), nullable=False),
    sa.Column("length", sa.BigInteger(), nullable=False),  # Upload-Length
    sa.Column("offset_bytes", sa.BigInteger(), nullable=False, default=0),  # bytes durably written
    sa.Column("metadata", sa.JSON(), nullable=False),  # Upload-Metadata, decoded
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("expires_at", sa.DateTime(), nullable=False, index=True),
    sa.Column("completed_at", sa.DateTime(), nullable=True),
    sa.Column("asset_id", Id, sa.ForeignKey("media_assets.id", ondelete="SET NULL"), nullable=True),
)

# Transactional outbox: a job is written in the same transaction as the data
# it is about, and a relay hands it to the broker afterwards.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_until", sa.DateTime(), nullable=True),
    sa.Column("published_at", sa.DateTime(), nullable=True, index=True),
    sa.Column("last_error", sa.Text(), nullable=True),
)

# The embedded profile's shared key-value store (sessions, token deny lists,
# nonces): every worker process sees the same rows.
kv_entries = sa.Table(
    "kv_entries",
    metadata,
    sa.Column("key", Exact(255), primary_key=True),
    sa.Column("value", sa.LargeBinary(), nullable=False),
    sa.Column("expires_at", sa.BigInteger(), nullable=True, index=True),  # unix ms
)

# -- identity (migration 0002) ---------------------------------------------------

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("email", Exact(254), nullable=False, unique=True),  # normalised: NFKC, lower case
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=True),  # Argon2id; NULL once erased
    sa.Column("role", sa.String(16), nullable=False, default="viewer"),
    sa.Column("status", sa.String(16), nullable=False, default="active"),  # active | suspended | deleted
    sa.Column("email_verified_at", sa.DateTime(), nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)

# One row per refresh token. Rotation marks the used row ``rotated_at`` and
# adds a new row in the same family; presenting a rotated token again revokes
# the whole family. A "session" as users see it is a family.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("family_id", Exact(32), nullable=False, index=True),
    sa.Column("refresh_token_hash", Exact(64), nullable=False, unique=True),  # sha256 hex
    sa.Column("user_agent", sa.String(200), nullable=False, default=""),
    sa.Column("ip", sa.String(64), nullable=False, default=""),
    sa.Column("started_at", sa.DateTime(), nullable=False),  # when the family began (login)
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("last_used_at", sa.DateTime(), nullable=True),
    sa.Column("expires_at", sa.DateTime(), nullable=False),
    sa.Column("rotated_at", sa.DateTime(), nullable=True),
    sa.Column("revoked_at", sa.DateTime(), nullable=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("access_key_id", Exact(32), nullable=False, unique=True),
    sa.Column("name", sa.String(100), nullable=False),
    # AES-256-GCM: 12-byte nonce || ciphertext || tag, access_key_id as associated data.
    sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
    sa.Column("scopes", sa.JSON(), nullable=False),
    sa.Column("owner_id", Id, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("rotated_at", sa.DateTime(), nullable=True),
    sa.Column("last_used_at", sa.DateTime(), nullable=True),
    sa.Column("revoked_at", sa.DateTime(), nullable=True),
)

# Email verification and password reset tokens: only the sha256 is stored.
one_time_tokens = sa.Table(
    "one_time_tokens",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("purpose", sa.String(16), nullable=False),  # verify_email | reset_password
    sa.Column("token_hash", Exact(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("expires_at", sa.DateTime(), nullable=False),
    sa.Column("used_at", sa.DateTime(), nullable=True),
)

# Signed webhooks received from external providers (e.g. the payment provider):
# stored once per (provider, event id), processed by the `webhook.received` job.
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("provider", Exact(32), nullable=False),
    sa.Column("event_id", Exact(100), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("received_at", sa.DateTime(), nullable=False),
    sa.Column("processed_at", sa.DateTime(), nullable=True),
    sa.UniqueConstraint("provider", "event_id"),
)

# -- jobs (migration 0005) ---------------------------------------------------------

# Job messages being handled or handled: a broker delivers at least once, and a
# repeat (a redelivery, an outbox row published twice) is skipped.
handled_messages = sa.Table(
    "handled_messages",
    metadata,
    sa.Column("message_id", Exact(64), primary_key=True),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("state", sa.String(8), nullable=False),  # running | done
    sa.Column("updated_at", sa.DateTime(), nullable=False, index=True),
)

# -- viewers (migration 0006) ------------------------------------------------------

# Up to five per account; each has its own progress, watchlist, ratings and
# parental limit. An account's first use of a viewer feature creates its main profile.
profiles = sa.Table(
    "profiles",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("max_age_rating", sa.String(8), nullable=True),  # AGE_RATINGS; NULL: no limit
    sa.Column("is_main", sa.Boolean(), nullable=False, default=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.UniqueConstraint("user_id", "name"),
)

watch_progress = sa.Table(
    "watch_progress",
    metadata,
    sa.Column("profile_id", Id, sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("position_seconds", sa.Integer(), nullable=False),
    sa.Column("duration_seconds", sa.Integer(), nullable=False),
    sa.Column("watched_at", sa.DateTime(), nullable=True),  # marked (or played to the end)
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    sa.Index("ix_watch_progress_profile_updated", "profile_id", "updated_at"),
)

watchlist = sa.Table(
    "watchlist",
    metadata,
    sa.Column("profile_id", Id, sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("added_at", sa.DateTime(), nullable=False),
    sa.Index("ix_watchlist_profile_added", "profile_id", "added_at"),
)

# One vote per profile and movie; movies.rating_sum/count change in the same
# transaction by the vote's difference, so concurrent votes add up exactly.
ratings = sa.Table(
    "ratings",
    metadata,
    sa.Column("profile_id", Id, sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("score", sa.Integer(), nullable=False),  # 1..10
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)

# -- scheduler (migration 0007) ----------------------------------------------------

# Who leads the periodic work: one row per lease; taking it over increments the
# fencing token, and a tick is only claimed under the token that holds the lease now.
scheduler_leases = sa.Table(
    "scheduler_leases",
    metadata,
    sa.Column("name", Exact(64), primary_key=True),
    sa.Column("holder", Exact(64), nullable=False),
    sa.Column("fence", sa.BigInteger(), nullable=False),
    sa.Column("expires_at", sa.DateTime(), nullable=False),
)

# One row per periodic task: the last tick claimed (ticks are numbered from the epoch
# by the task's interval), so each tick runs once however many workers look at it.
scheduled_tasks = sa.Table(
    "scheduled_tasks",
    metadata,
    sa.Column("name", Exact(64), primary_key=True),
    sa.Column("last_tick", sa.BigInteger(), nullable=False, default=0),
    sa.Column("fence", sa.BigInteger(), nullable=False, default=0),
    sa.Column("started_at", sa.DateTime(), nullable=True),
    sa.Column("finished_at", sa.DateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
)

# -- billing (migration 0007) ------------------------------------------------------

PLAN_PERIODS = ("month", "year")
SUBSCRIPTION_STATUSES = ("incomplete", "trialing", "active", "past_due", "canceled", "expired")
LIVE_SUBSCRIPTION_STATUSES = ("incomplete", "trialing", "active", "past_due")
PAYMENT_STATUSES = ("pending", "processing", "succeeded", "failed")
PAYMENT_PURPOSES = ("initial", "renewal", "upgrade")

# A plan is a name and a tier; what it costs and gives is in its versions. A price
# change adds a version, so existing subscriptions keep the terms they signed up for.
plans = sa.Table(
    "plans",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("code", Exact(32), nullable=False, unique=True),  # e.g. premium-monthly
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("tier", sa.String(16), nullable=False),  # PLAN_TIERS
    sa.Column("description", sa.String(500), nullable=False, default=""),
    sa.Column("active", sa.Boolean(), nullable=False, default=True),  # offered to new subscribers
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)

plan_versions = sa.Table(
    "plan_versions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("plan_id", Id, sa.ForeignKey("plans.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("price_minor", sa.BigInteger(), nullable=False),  # integer minor units (cents)
    sa.Column("currency", Exact(3), nullable=False),  # ISO 4217, lower case
    sa.Column("billing_period", sa.String(8), nullable=False),  # PLAN_PERIODS
    sa.Column("screens", sa.Integer(), nullable=False),  # concurrent streams
    sa.Column("max_height", sa.Integer(), nullable=False),  # best rendition quality, e.g. 1080
    sa.Column("trial_days", sa.Integer(), nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.UniqueConstraint("plan_id", "version"),
)

# The provider's customer and default payment method of an account.
billing_customers = sa.Table(
    "billing_customers",
    metadata,
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("customer_id", Exact(64), nullable=False),
    sa.Column("payment_method", Exact(64), nullable=True),
    sa.Column("trial_used", sa.Boolean(), nullable=False, default=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)

# ``live_user_id`` is the user id while the subscription is live (incomplete, trialing,
# active, past_due) and NULL after: its unique index is "one live subscription per account".
subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("live_user_id", Id, nullable=True, unique=True),
    sa.Column("status", sa.String(16), nullable=False),  # SUBSCRIPTION_STATUSES
    sa.Column("plan_version_id", Id, sa.ForeignKey("plan_versions.id"), nullable=False),
    sa.Column("pending_plan_version_id", Id, sa.ForeignKey("plan_versions.id"), nullable=True),  # downgrade
    sa.Column("period_number", sa.Integer(), nullable=False, default=0),  # 1 = the first paid period
    sa.Column("current_period_start", sa.DateTime(), nullable=True),
    sa.Column("current_period_end", sa.DateTime(), nullable=True, index=True),
    sa.Column("trial_end", sa.DateTime(), nullable=True),
    sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False, default=False),
    sa.Column("past_due_since", sa.DateTime(), nullable=True),
    sa.Column("canceled_at", sa.DateTime(), nullable=True),
    sa.Column("ended_at", sa.DateTime(), nullable=True),
    sa.Column("version", sa.Integer(), nullable=False, default=1),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    sa.Index("ix_subscriptions_status_period_end", "status", "current_period_end"),
)

# Every transition of a subscription, written in the transaction that made it.
subscription_events = sa.Table(
    "subscription_events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", Id, sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("from_status", sa.String(16), nullable=True),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("detail", sa.JSON(), nullable=False),
    sa.Column("actor_id", Id, nullable=True),  # the user or admin who asked; NULL: the system
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

# A charge. ``charge_key`` names what it pays for (``sub-12-renewal-3``) and is
# unique, so a period is never charged twice however many schedulers try.
payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("subscription_id", Id, sa.ForeignKey("subscriptions.id", ondelete="SET NULL"), nullable=True,
              index=True),
    sa.Column("charge_key", Exact(64), nullable=False, unique=True),
    sa.Column("purpose", sa.String(16), nullable=False),  # PAYMENT_PURPOSES
    sa.Column("plan_version_id", Id, sa.ForeignKey("plan_versions.id"), nullable=True),
    sa.Column("period_number", sa.Integer(), nullable=True),
    sa.Column("amount_minor", sa.BigInteger(), nullable=False),
    sa.Column("currency", Exact(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # PAYMENT_STATUSES
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("intent_id", Exact(64), nullable=True, unique=True),
    sa.Column("provider_key", Exact(64), nullable=False, unique=True),  # the provider call's idempotency key
    sa.Column("failure_code", sa.String(64), nullable=True),
    sa.Column("failure_message", sa.String(255), nullable=True),
    sa.Column("refunded_minor", sa.BigInteger(), nullable=False, default=0),  # succeeded refunds
    sa.Column("refunding_minor", sa.BigInteger(), nullable=False, default=0),  # refunds in flight
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    sa.Column("succeeded_at", sa.DateTime(), nullable=True),
    sa.Index("ix_payments_status_updated", "status", "updated_at"),
)

refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("payment_id", Id, sa.ForeignKey("payments.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("amount_minor", sa.BigInteger(), nullable=False),
    sa.Column("currency", Exact(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | succeeded | failed
    sa.Column("reason", sa.String(255), nullable=False, default=""),
    sa.Column("provider_refund_id", Exact(64), nullable=True, unique=True),
    sa.Column("provider_key", Exact(64), nullable=False, unique=True),
    sa.Column("actor_id", Id, nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)

# ``Idempotency-Key`` on money-moving requests: the first answer, kept 24 h, replayed
# for the same key and body; another body under the key is refused.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("owner", Exact(64), nullable=False),  # user:<id> (or key:<access key id>)
    sa.Column("key", Exact(255), nullable=False),
    sa.Column("request_hash", Exact(64), nullable=False),  # sha256 of method, route and body
    sa.Column("state", sa.String(8), nullable=False),  # running | done
    sa.Column("response_status", sa.Integer(), nullable=True),
    sa.Column("response_body", sa.LargeBinary(), nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("expires_at", sa.DateTime(), nullable=False, index=True),
    sa.UniqueConstraint("owner", "key"),
)

# -- community: comments (migration 0008) --------------------------------------------

# Bodies: MariaDB's TEXT holds 65,535 bytes, less than a long post (or a comment's rendered HTML
# of multi-byte characters); MEDIUMTEXT holds 16 MiB. SQLite's TEXT has no such limit.
Body = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")

COMMENT_STATUSES = ("visible", "hidden", "deleted")
REPORT_REASONS = ("spam", "abuse", "spoiler", "off_topic", "other")

# Threads are one level deep as shown: a reply to a reply keeps its ``parent_id`` but joins its
# top-level comment's thread (``root_id``; NULL for a top-level comment). A deleted comment
# stays as a tombstone (status deleted, body cleared) so its thread keeps its shape.
comments = sa.Table(
    "comments",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("profile_id", Id, sa.ForeignKey("profiles.id", ondelete="SET NULL"), nullable=True),
    sa.Column("author_name", sa.String(50), nullable=False),  # the profile's name when posted
    sa.Column("parent_id", Id, sa.ForeignKey("comments.id", ondelete="SET NULL"), nullable=True),
    sa.Column("root_id", Id, nullable=True),
    sa.Column("body_source", Body, nullable=False),
    sa.Column("body_html", Body, nullable=False),
    sa.Column("body_hash", Exact(64), nullable=False),  # sha256 of the normalised source: the duplicate guard
    sa.Column("spoiler", sa.Boolean(), nullable=False, default=False),
    sa.Column("status", sa.String(16), nullable=False, default="visible"),  # COMMENT_STATUSES
    sa.Column("hidden_reason", sa.String(500), nullable=True),
    sa.Column("report_count", sa.Integer(), nullable=False, default=0),  # open reports
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("edited_at", sa.DateTime(), nullable=True),
    sa.Column("deleted_at", sa.DateTime(), nullable=True),
    sa.Index("ix_comments_movie_root_id", "movie_id", "root_id", "id"),
    sa.Index("ix_comments_reported", "report_count", "id"),
    sa.Index("ix_comments_profile_created", "profile_id", "created_at"),
)

# Visible comments per movie, changed in the transaction of each post, hide, restore or delete.
comment_counts = sa.Table(
    "comment_counts",
    metadata,
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("visible", sa.Integer(), nullable=False, default=0),
)

comment_reports = sa.Table(
    "comment_reports",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("comment_id", Id, sa.ForeignKey("comments.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),  # REPORT_REASONS
    sa.Column("note", sa.String(500), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("resolved_at", sa.DateTime(), nullable=True),
    sa.UniqueConstraint("comment_id", "user_id"),
)

# A user banned from commenting until a moment (one row per user: the latest ban).
comment_bans = sa.Table(
    "comment_bans",
    metadata,
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("until", sa.DateTime(), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("actor_id", Id, nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

# Every moderation action: who, when, why, on what.
moderation_actions = sa.Table(
    "moderation_actions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("actor_id", Id, nullable=True),
    sa.Column("action", sa.String(32), nullable=False),  # hide | restore | ban | unban | dismiss_reports
    sa.Column("target_type", sa.String(16), nullable=False),  # comment | user
    sa.Column("target_id", Id, nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False, index=True),
)

# -- community: blog (migration 0008) ------------------------------------------------

POST_STATUSES = ("draft", "scheduled", "published", "archived")

blog_posts = sa.Table(
    "blog_posts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("slug", Exact(120), nullable=False, unique=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("body_source", Body, nullable=False),
    sa.Column("body_html", Body, nullable=False),
    sa.Column("excerpt", sa.String(500), nullable=False, default=""),
    sa.Column("cover_asset_id", Id, sa.ForeignKey("media_assets.id", ondelete="SET NULL"), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, default="draft"),  # POST_STATUSES
    sa.Column("publish_at", sa.DateTime(), nullable=True),  # scheduled: when it publishes itself
    sa.Column("published_at", sa.DateTime(), nullable=True),
    sa.Column("author_id", Id, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.Column("version", sa.Integer(), nullable=False, default=1),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    sa.Index("ix_blog_posts_status_published", "status", "published_at", "id"),
    sa.Index("ix_blog_posts_status_publish_at", "status", "publish_at"),
)

blog_post_tags = sa.Table(
    "blog_post_tags",
    metadata,
    sa.Column("post_id", Id, sa.ForeignKey("blog_posts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", Exact(40), primary_key=True),
    sa.Index("ix_blog_post_tags_tag_post", "tag", "post_id"),
)

blog_post_movies = sa.Table(
    "blog_post_movies",
    metadata,
    sa.Column("post_id", Id, sa.ForeignKey("blog_posts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True),
)

# Every saved version of a post (the post row holds the latest).
blog_revisions = sa.Table(
    "blog_revisions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("post_id", Id, sa.ForeignKey("blog_posts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("body_source", Body, nullable=False),
    sa.Column("excerpt", sa.String(500), nullable=False),
    sa.Column("editor_id", Id, nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.UniqueConstraint("post_id", "version"),
)
