"""Who a catalog request is for (:class:`vedina.services.visibility.Audience`).

Anonymous callers and accounts acting as their main profile see every
published movie inside its window; editors (``catalog:write``) also drafts
and movies outside their window; a profile chosen with ``X-Profile-Id``
brings its parental limit. Without that header no profile is looked up, so
the common read costs no lookup at all; with it, the profile comes from the
profiles' near cache.
"""

from __future__ import annotations

from robyn import Request

from vedina.errors import ValidationFailed
from vedina.http.context import context_of
from vedina.services.visibility import Audience
from vedina.state import AppState

PROFILE_HEADER = "x-profile-id"
_ANONYMOUS = Audience()
_EDITOR = Audience(sees_unpublished=True)


def profile_id_of(request: Request) -> int | None:
    raw = request.headers.get(PROFILE_HEADER)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise ValidationFailed("X-Profile-Id must be a profile id", details={"field": "X-Profile-Id"})
    return int(raw)


async def audience_of(request: Request, state: AppState) -> Audience:
    principal = context_of(request).principal
    if principal is None:
        return _ANONYMOUS
    editor = "catalog:write" in principal.permissions
    profile_id = profile_id_of(request) if principal.kind == "user" else None
    if profile_id is None:
        return _EDITOR if editor else _ANONYMOUS
    profile = await state.services.profiles.current(user_id=int(principal.subject), profile_id=profile_id)
    return Audience(sees_unpublished=editor, max_age_rating=profile.max_age_rating)
