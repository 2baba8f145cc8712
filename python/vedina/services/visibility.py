"""Who may see and play a movie: the rules every read path applies.

Listing, search, detail and playback all ask the same two questions, answered
here once:

- *Who is asking* (:class:`Audience`): an editor sees drafts and movies
  outside their window; a profile with a parental limit sees only movies rated
  up to it; everyone else sees published movies inside their availability window.
- *Why not* (:meth:`MovieGate.refusal`): a stable code, the one playback
  answers with (``not_published``, ``outside_window``, ``age_restricted``).

    >>> gate = MovieGate(movie_id=7, status="published", available_from=None,
    ...                  available_until=None, maturity_rating="R", plan_tier="basic")
    >>> gate.refusal(Audience(max_age_rating="PG-13"), now=utcnow())
    'age_restricted'

Deleted movies are refused to everyone as ``not_found``: they are gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from vedina.storage.clock import utcnow
from vedina.storage.schema import AGE_RATINGS

_RANK = {rating: rank for rank, rating in enumerate(AGE_RATINGS)}


def ratings_up_to(limit: str | None) -> tuple[str, ...] | None:
    """The age ratings a parental ``limit`` allows (None: no limit)."""
    if limit is None:
        return None
    return AGE_RATINGS[: _RANK[limit] + 1]


@dataclass(frozen=True, slots=True)
class Audience:
    """Who is asking, as far as visibility goes."""

    sees_unpublished: bool = False  # editors (catalog:write): drafts and movies outside their window
    max_age_rating: str | None = None  # the profile's parental limit

    @property
    def cache_key(self) -> str:
        """Part of the key of every cached answer that depends on the audience."""
        return f"{'e' if self.sees_unpublished else 'v'}:{self.max_age_rating or '*'}"


@dataclass(frozen=True, slots=True)
class MovieGate:
    """What visibility depends on for one movie (cached with the movie)."""

    movie_id: int
    status: str
    available_from: datetime | None
    available_until: datetime | None
    maturity_rating: str
    plan_tier: str

    def refusal(self, audience: Audience, *, now: datetime | None = None) -> str | None:
        """None when ``audience`` may see the movie at ``now`` (default: the present), else why not."""
        if self.status == "deleted":
            return "not_found"
        if not audience.sees_unpublished:
            if self.status != "published":
                return "not_published"
            if (self.available_from is not None or self.available_until is not None) and not self.in_window(
                now or utcnow()
            ):
                return "outside_window"
        if audience.max_age_rating is not None and _RANK[self.maturity_rating] > _RANK[audience.max_age_rating]:
            return "age_restricted"
        return None

    def in_window(self, now: datetime) -> bool:
        return (self.available_from is None or self.available_from <= now) and (
            self.available_until is None or now < self.available_until
        )
