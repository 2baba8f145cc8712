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

movies = sa.Table(
    "movies",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("slug", sa.String(120), nullable=False, unique=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("synopsis", sa.Text(), nullable=False, default=""),
    sa.Column("release_year", sa.Integer(), nullable=True),
    sa.Column("duration_seconds", sa.Integer(), nullable=True),
    sa.Column("maturity_rating", sa.String(8), nullable=False, default="G"),
    sa.Column("genres", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)

media_assets = sa.Table(
    "media_assets",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("movie_id", Id, sa.ForeignKey("movies.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # video | subtitle | poster
    sa.Column("path", sa.String(500), nullable=False),  # relative to MEDIA_ROOT
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=True),
    sa.Column("language", sa.String(16), nullable=True),
    sa.Column("label", sa.String(100), nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
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
