"""What the simulator is told to do, set through ``POST /_sim/behaviour``.

Counters (``decline_next``, ``fail_next``, ``drop_answer_next``) are used up one
API request (or charge) at a time; flags stay until changed or ``/_sim/reset``.

>>> b = Behaviour()
>>> b = b.updated({"decline_next": 1})
>>> b.take("decline_next"), b.take("decline_next")
(True, False)
"""

from __future__ import annotations

from typing import Literal

import msgspec

DECLINE_CODES = ("card_declined", "insufficient_funds", "lost_card", "stolen_card", "expired_card",
                 "incorrect_cvc", "processing_error", "authentication_required")


class BehaviourUpdate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The body of ``POST /_sim/behaviour``: only the fields given change."""

    decline_next: int | msgspec.UnsetType = msgspec.UNSET
    decline_code: str | msgspec.UnsetType = msgspec.UNSET
    processing: bool | msgspec.UnsetType = msgspec.UNSET
    settle_after_seconds: float | None | msgspec.UnsetType = msgspec.UNSET
    settle_outcome: Literal["succeeded", "failed"] | msgspec.UnsetType = msgspec.UNSET
    fail_next: int | msgspec.UnsetType = msgspec.UNSET
    drop_answer_next: int | msgspec.UnsetType = msgspec.UNSET
    delay_ms: int | msgspec.UnsetType = msgspec.UNSET
    duplicate_events: bool | msgspec.UnsetType = msgspec.UNSET
    hold_events: bool | msgspec.UnsetType = msgspec.UNSET
    webhook_attempts: int | msgspec.UnsetType = msgspec.UNSET
    webhook_retry_seconds: float | msgspec.UnsetType = msgspec.UNSET


class Behaviour(msgspec.Struct, kw_only=True):
    # The next N charges decline with decline_code, whatever the payment method.
    decline_next: int = 0
    decline_code: str = "card_declined"
    # New intents answer "processing" and settle later: after settle_after_seconds
    # (None: only through POST /_sim/intents/{id}/settle) with settle_outcome.
    processing: bool = False
    settle_after_seconds: float | None = None
    settle_outcome: str = "succeeded"
    # The next N API requests: the connection is closed before the request takes effect.
    fail_next: int = 0
    # The next N API requests take effect, then the connection is closed without the answer.
    drop_answer_next: int = 0
    # Every API answer waits this long (after the request took effect).
    delay_ms: int = 0
    # Webhooks: every event delivered twice; events held until POST /_sim/deliver.
    duplicate_events: bool = False
    hold_events: bool = False
    # Delivery attempts per event and endpoint (the first one included), and the first
    # back-off between them (doubled after each failure).
    webhook_attempts: int = 4
    webhook_retry_seconds: float = 0.2

    def updated(self, changes: dict) -> Behaviour:
        """A copy with ``changes`` (a decoded BehaviourUpdate body) applied; ValueError if out of range."""
        update = msgspec.convert(changes, BehaviourUpdate)
        values = msgspec.structs.asdict(self)
        values.update({k: v for k, v in msgspec.structs.asdict(update).items() if v is not msgspec.UNSET})
        result = Behaviour(**values)
        result.check()
        return result

    def check(self) -> None:
        for name in ("decline_next", "fail_next", "drop_answer_next"):
            if not 0 <= getattr(self, name) <= 1_000:
                raise ValueError(f"{name} must be between 0 and 1000")
        if self.decline_code not in DECLINE_CODES:
            raise ValueError(f"decline_code must be one of {', '.join(DECLINE_CODES)}")
        if self.settle_after_seconds is not None and not 0 <= self.settle_after_seconds <= 3_600:
            raise ValueError("settle_after_seconds must be between 0 and 3600, or null")
        if not 0 <= self.delay_ms <= 120_000:
            raise ValueError("delay_ms must be between 0 and 120000")
        if not 1 <= self.webhook_attempts <= 20:
            raise ValueError("webhook_attempts must be between 1 and 20")
        if not 0 < self.webhook_retry_seconds <= 60:
            raise ValueError("webhook_retry_seconds must be above 0 and at most 60")

    def take(self, counter: str) -> bool:
        """Use up one of ``counter`` if any is left."""
        left = getattr(self, counter)
        if left > 0:
            setattr(self, counter, left - 1)
            return True
        return False
