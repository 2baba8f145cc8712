"""Roles, permissions and API key scopes: the one table the HTTP layer consults.

Routes declare the permission they need (``vedina.http.auth.requires``); no
handler compares roles. A user's permissions are those of their role; an API
key's are its scopes (keys have no role and none of the ``account:`` rights).

>>> allowed("editor", "catalog:write"), allowed("viewer", "catalog:write")
(True, False)
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"
    MODERATOR = "moderator"
    ADMIN = "admin"


# Permission -> meaning. Every route's permission must be listed here.
PERMISSIONS: dict[str, str] = {
    "account:self": "read and change one's own account, sessions and password",
    "catalog:read": "read the catalog (public; listed for API key scopes)",
    "catalog:write": "create and edit movies and media",
    "blog:write": "write blog posts",
    "comments:moderate": "hide and restore comments, work the report queue, ban users from commenting",
    "moderation:read": "read the moderation log (admins)",
    "users:read": "list and search users",
    "users:manage": "change roles, suspend and unsuspend users",
    "api_keys:manage": "create, rotate and revoke API keys",
    "payments:webhook": "deliver payment webhooks (API keys)",
    "billing:manage": "manage plans, see any account's subscriptions and payments, refund payments",
    "media:ingest": "upload media for ingestion (API keys)",
}

_VIEWER = frozenset({"account:self", "catalog:read"})
ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.VIEWER: _VIEWER,
    Role.EDITOR: _VIEWER | {"catalog:write", "blog:write"},
    Role.MODERATOR: _VIEWER | {"comments:moderate", "users:read"},
    Role.ADMIN: frozenset(PERMISSIONS),
}

# What an API key may be granted: service-to-service permissions only.
API_KEY_SCOPES = frozenset({"catalog:read", "catalog:write", "payments:webhook", "media:ingest"})


def permissions_of(role: str) -> frozenset[str]:
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()


def allowed(role: str, permission: str) -> bool:
    return permission in permissions_of(role)
