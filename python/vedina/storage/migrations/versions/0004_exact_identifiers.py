"""Identifiers, keys and addresses compare byte for byte on MariaDB/MySQL too.

MariaDB's default collations are case- and accent-insensitive, so two
different webhook event ids, or two spellings of an address, were one row
there and two on SQLite. SQLite already compares exactly: nothing to do there.

Revision ID: 0004
Revises: 0003
"""

from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
# Not expand-only (docs/adr/0015): alter_column(type_=...) rewrites existing columns.
contract = ("Changes the collation of existing identifier columns on MariaDB (a type change, table rebuilt "
            "in place); written before the expand/contract rule. Length and nullability are unchanged and "
            "comparisons only become exact, so the previous release keeps working, but each table is locked "
            "while it is rebuilt: apply it in a quiet window, not mid-rollout.")

# (table, column, length, nullable)
EXACT_COLUMNS = [
    ("users", "email", 254, False),
    ("sessions", "family_id", 32, False),
    ("sessions", "refresh_token_hash", 64, False),
    ("api_keys", "access_key_id", 32, False),
    ("one_time_tokens", "token_hash", 64, False),
    ("webhook_events", "provider", 32, False),
    ("webhook_events", "event_id", 100, False),
    ("kv_entries", "key", 255, False),
]


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column, length, nullable in EXACT_COLUMNS:
        op.alter_column(
            table, column, type_=mysql.VARCHAR(length, collation=collation),
            existing_type=mysql.VARCHAR(length), existing_nullable=nullable,
        )


def upgrade() -> None:
    _collate("utf8mb4_bin")


def downgrade() -> None:
    _collate("utf8mb4_unicode_ci")
