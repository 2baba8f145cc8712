"""How often, and how long apart, a failing job is tried before it becomes a dead letter.

One :class:`RetryPolicy` per topic, in :data:`POLICIES` (unknown topics get
:data:`DEFAULT`). A *counted* failure is a handler that raised; an outage
(:class:`~vedina.errors.BackendUnavailable`, a broker that is down,
:class:`~vedina.storage.message_ledger.Busy`) is not counted. After the
``n``-th counted failure the job waits :meth:`RetryPolicy.delay` (``n``) —
exponential back-off with *full jitter*: a uniform draw in ``[0, min(max_delay,
base_delay * 2 ** (n - 1))]``, so jobs that failed together do not come back
together — and after ``max_attempts`` counted failures it is a dead letter
(``vedina jobs dead list|replay|drop``). The handler therefore runs at most
``max_attempts`` times per delivery chain.

Where the waiting happens is the broker's business: the outbox row's
``claimed_until`` in the embedded profile (:mod:`vedina.storage.outbox`),
RabbitMQ delay queues in the real one (:mod:`vedina.storage.broker`).

>>> policies = RetryPolicies()
>>> policies.for_topic("mail").max_attempts
8
>>> fast = RetryPolicies(default=RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.2), topics={})
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # counted failures before the dead-letter queue (>= 1)
    base_delay: float = 2.0  # seconds: the back-off cap after the first failure
    max_delay: float = 300.0  # seconds: the cap never grows past this

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError(f"invalid retry policy {self}")

    def exhausted(self, failures: int) -> bool:
        """True when a job that failed ``failures`` times is a dead letter."""
        return failures >= self.max_attempts

    def delay(self, failures: int, *, draw: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the ``failures``-th counted failure (full jitter)."""
        cap = min(self.max_delay, self.base_delay * 2 ** max(failures - 1, 0))
        return cap * draw()


DEFAULT = RetryPolicy()

# Topic -> policy. A topic missing here gets DEFAULT; add a line with its topic.
POLICIES: dict[str, RetryPolicy] = {
    # An email that cannot be sent now (SMTP down) is worth waiting for, a little longer.
    "mail": RetryPolicy(max_attempts=8, base_delay=5.0, max_delay=900.0),
    # Reads a file and the database: a failure is an outage or a bug, not worth many tries.
    "media.probe": RetryPolicy(max_attempts=4, base_delay=5.0, max_delay=300.0),
    # Minutes of CPU per attempt: few tries, far apart.
    "media.transcode": RetryPolicy(max_attempts=3, base_delay=30.0, max_delay=1800.0),
    "webhook.received": RetryPolicy(max_attempts=8, base_delay=2.0, max_delay=600.0),
}


@dataclass(frozen=True)
class RetryPolicies:
    """The policy of each topic; tests and operators may pass their own table."""

    default: RetryPolicy = DEFAULT
    topics: Mapping[str, RetryPolicy] = field(default_factory=lambda: dict(POLICIES))

    def for_topic(self, topic: str) -> RetryPolicy:
        return self.topics.get(topic, self.default)

    def attempt_limit(self, topic_column) -> sa.ColumnElement:
        """A SQL expression: the ``max_attempts`` of the row's topic (for the outbox's WHERE)."""
        if not self.topics:
            return sa.literal(self.default.max_attempts)
        whens = {topic: policy.max_attempts for topic, policy in self.topics.items()}
        return sa.case(whens, value=topic_column, else_=self.default.max_attempts)
