"""The one error tree of Vedina, and the one table that maps it to HTTP.

    AppError                      (500 "error", internal_error)
    ├── BadRequest                (400 "fail",  bad_request)
    │   └── ValidationFailed      (422 "fail",  validation_failed)
    │       └── IdempotencyKeyReused (422 "fail", idempotency_key_reused)
    ├── Unauthorized              (401 "fail",  unauthorized)
    ├── PaymentDeclined           (402 "fail",  payment_declined: the provider refused the charge)
    ├── Forbidden                 (403 "fail",  forbidden)
    │   └── Refused               (403 "fail",  per instance: the rule that refused, e.g. age_restricted)
    ├── NotFound                  (404 "fail",  not_found)
    ├── MethodNotAllowed          (405 "fail",  method_not_allowed)
    ├── Conflict                  (409 "fail",  conflict; per instance with a code, e.g. subscription_exists)
    │   └── TooManyStreams        (409 "fail",  too_many_streams)
    ├── PreconditionFailed        (412 "fail",  precondition_failed)
    ├── PreconditionRequired      (428 "fail",  precondition_required)
    ├── PayloadTooLarge           (413 "fail",  payload_too_large)
    ├── UnsupportedMediaType      (415 "fail",  unsupported_media_type)
    ├── RangeNotSatisfiable       (416 "fail",  range_not_satisfiable)
    ├── TooManyRequests           (429 "fail",  rate_limited)
    ├── ChecksumMismatch          (460 "fail",  checksum_mismatch: tus 1.0, a chunk's digest differs)
    └── ServiceUnavailable        (503 "error", service_unavailable)

Services raise these (they know nothing of HTTP beyond the status each class
carries); the HTTP layer renders every one as

    {"error": {"code": ..., "message": ..., "details": ..., "status": "fail"|"error"}}

4xx errors are the client's ("fail"), 5xx the server's ("error"). A backing
service that cannot be reached (the database, Redis, the broker) is an outage,
not a bug: :func:`translate` turns the drivers' connection errors into
ServiceUnavailable (503 with ``Retry-After``), here, once, for every caller.
Anything else that is not an AppError becomes a 500 with a generic message:
stack traces never reach clients.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(self, message: str | None = None, *, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details
        self.headers = headers or {}

    @property
    def kind(self) -> str:
        return "fail" if self.status < 500 else "error"

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details, "status": self.kind}}


class BadRequest(AppError):
    status, code, default_message = 400, "bad_request", "Bad request"


class ValidationFailed(BadRequest):
    status, code, default_message = 422, "validation_failed", "Request validation failed"


class IdempotencyKeyReused(ValidationFailed):
    status, code, default_message = 422, "idempotency_key_reused", "This Idempotency-Key was used for another request"


class Unauthorized(AppError):
    status, code, default_message = 401, "unauthorized", "Authentication required"


class PaymentDeclined(AppError):
    status, code, default_message = 402, "payment_declined", "The payment was declined"


class Forbidden(AppError):
    status, code, default_message = 403, "forbidden", "Not allowed"


class Refused(Forbidden):
    """A 403 whose code names the rule that refused (a stable code clients switch on:
    ``not_published``, ``age_restricted``, ``playback_token_expired``, ...)."""

    def __init__(self, code: str, message: str | None = None, *, details: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message, details=details, headers=headers)
        self.code = code  # type: ignore[misc]  # per instance, shadowing the class default


class NotFound(AppError):
    status, code, default_message = 404, "not_found", "Not found"


class MethodNotAllowed(AppError):
    status, code, default_message = 405, "method_not_allowed", "Method not allowed"


class Conflict(AppError):
    status, code, default_message = 409, "conflict", "Conflict"

    def __init__(self, message: str | None = None, *, details: Any = None, headers: dict[str, str] | None = None,
                 code: str | None = None):
        super().__init__(message, details=details, headers=headers)
        if code is not None:
            self.code = code  # type: ignore[misc]  # a stable code clients switch on, e.g. subscription_exists


class TooManyStreams(Conflict):
    status, code, default_message = 409, "too_many_streams", "Too many streams are playing on this account"


class PreconditionFailed(AppError):
    status, code, default_message = 412, "precondition_failed", "The resource changed since you read it"


class PreconditionRequired(AppError):
    status, code, default_message = 428, "precondition_required", "This change requires If-Match"


class PayloadTooLarge(AppError):
    status, code, default_message = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(AppError):
    status, code, default_message = 415, "unsupported_media_type", "Unsupported media type"


class RangeNotSatisfiable(AppError):
    status, code, default_message = 416, "range_not_satisfiable", "Requested range not satisfiable"


class TooManyRequests(AppError):
    status, code, default_message = 429, "rate_limited", "Too many requests"


class ChecksumMismatch(AppError):
    """tus 1.0 checksum extension: the chunk's digest is not the Upload-Checksum sent (status 460)."""

    status, code, default_message = 460, "checksum_mismatch", "Checksum mismatch"


class ServiceUnavailable(AppError):
    status, code, default_message = 503, "service_unavailable", "Service unavailable"


# Seconds a client should wait after an outage answer.
RETRY_AFTER_OUTAGE = 5


class BackendUnavailable(ServiceUnavailable):
    """A database, cache or broker could not be reached."""

    def __init__(self, service: str) -> None:
        super().__init__(f"The {service} is temporarily unavailable: try again shortly",
                         details={"service": service}, headers={"retry-after": str(RETRY_AFTER_OUTAGE)})


def _outage_kinds() -> tuple[tuple[type, str], ...]:
    import redis.exceptions as redis_errors
    import sqlalchemy.exc as sql_errors

    from vedina.storage.broker import BrokerUnavailable

    return (
        (redis_errors.ConnectionError, "cache"),
        (redis_errors.TimeoutError, "cache"),
        (sql_errors.OperationalError, "database"),
        (sql_errors.InterfaceError, "database"),
        (sql_errors.TimeoutError, "database"),  # the pool had no connection to give
        (BrokerUnavailable, "broker"),
    )


def translate(exc: BaseException) -> BaseException:
    """The AppError a foreign exception stands for (an outage), else the exception itself."""
    if isinstance(exc, AppError):
        return exc
    for kind, service in _outage_kinds():
        if isinstance(exc, kind):
            return BackendUnavailable(service)
    return exc


def error_body(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and extra headers for any exception."""
    exc = translate(exc)
    if isinstance(exc, AppError):
        return exc.status, exc.to_body(), exc.headers
    return 500, AppError().to_body(), {}
