"""Optional error tracking with Sentry (``SENTRY_DSN``; off by default).

Only errors are sent: the log records the app writes at ERROR with an exception
(an unhandled exception in a handler or in the request pipeline, a failed job),
tagged with the ``request_id`` of the request being served. No framework
integration is enabled (no request bodies, headers or cookies are ever read by
the SDK), local variables are not captured (a frame may hold a token or a
password), and :func:`scrub` removes whatever could still carry a secret before
an event leaves the process. Nothing is traced (no per-request cost).

>>> init_error_tracking(load_settings({"SENTRY_DSN": "https://key@sentry.example/1"}))
True
"""

from __future__ import annotations

import logging
import re
from typing import Any

from vedina.config import ConfigError, Settings
from vedina.logs import request_id_var

# Keys of an event's request/extra/breadcrumb data that are dropped wherever they appear.
_SECRET_WORDS = ("authorization", "cookie", "token", "password", "secret", "signature", "api_key", "apikey",
                 "csrf", "session", "key")
# Request headers that are kept (the SDK adds none by itself here; a stray one is filtered).
_SAFE_HEADERS = frozenset({"content-type", "content-length", "user-agent", "accept", "x-request-id"})
# SQLAlchemy puts a statement's bound values in its errors' text: hashes, tokens, emails.
_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\s*(\(|\[|$))", re.DOTALL)


def init_error_tracking(settings: Settings) -> bool:
    """Start the Sentry client in this process when ``SENTRY_DSN`` is set (call after a fork)."""
    if not settings.sentry_dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.atexit import AtexitIntegration
        from sentry_sdk.integrations.dedupe import DedupeIntegration
        from sentry_sdk.integrations.logging import LoggingIntegration
    except ImportError:
        raise ConfigError("SENTRY_DSN is set but sentry-sdk is not installed: pip install 'vedina[sentry]'") from None
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment or settings.env,
        release=_release(),
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
            DedupeIntegration(),
            AtexitIntegration(),
        ],
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=None,
        before_send=_before_send,
        before_breadcrumb=_before_breadcrumb,
    )
    return True


def _release() -> str:
    from vedina import __version__

    return f"vedina@{__version__}"


def _before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    request_id = request_id_var.get()
    if request_id:
        event.setdefault("tags", {})["request_id"] = request_id
    return scrub(event)


def _before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    if crumb.get("category") == "vedina.access":
        return None  # one per request: noise
    record = (hint or {}).get("log_record")
    return scrub_breadcrumb(crumb, template=record.msg if isinstance(record, logging.LogRecord) else None)


def scrub_breadcrumb(crumb: dict[str, Any], *, template: Any) -> dict[str, Any]:
    """A breadcrumb with its log record's message template instead of the message formatted with the
    record's arguments (``log.info("sent to %s", email)``), and its data scrubbed like ``extra``.
    Without a template (not a log record) the message is dropped.

    >>> scrub_breadcrumb({"message": "sent to a@b.c", "data": {"token": "t", "n": 1}}, template="sent to %s")
    {'message': 'sent to %s', 'data': {'n': 1}}
    """
    if isinstance(template, str):
        crumb["message"] = template
    else:
        crumb.pop("message", None)
    if isinstance(crumb.get("data"), dict):
        crumb["data"] = _scrub_mapping(crumb["data"])
    return crumb


def scrub(event: dict[str, Any]) -> dict[str, Any]:
    """The event without cookies, bodies, query strings, secret-looking headers or data keys, or log
    arguments (a log record's message is sent as its template).

    >>> scrub({"request": {"cookies": {"vedina_at": "x"}, "headers": {"Authorization": "Bearer x"}}})
    {'request': {'headers': {}}}
    """
    request = event.get("request")
    if isinstance(request, dict):
        for field in ("cookies", "data", "query_string", "env"):
            request.pop(field, None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items() if k.lower() in _SAFE_HEADERS}
        if isinstance(request.get("url"), str):
            request["url"] = request["url"].split("?", 1)[0]
    for exception in (event.get("exception") or {}).get("values") or ():
        if isinstance(exception, dict) and isinstance(exception.get("value"), str):
            exception["value"] = _SQL_PARAMETERS.sub("[parameters hidden]", exception["value"])
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        # "formatted" is record.getMessage(): the template with the arguments in; keep the template.
        logentry.pop("params", None)
        if isinstance(logentry.get("message"), str):
            logentry["formatted"] = logentry["message"]
        else:
            logentry.pop("formatted", None)
    for field in ("extra", "contexts"):
        if isinstance(event.get(field), dict):
            event[field] = _scrub_mapping(event[field])
    breadcrumbs = event.get("breadcrumbs")
    values = breadcrumbs.get("values") if isinstance(breadcrumbs, dict) else None
    for crumb in values or ():
        if isinstance(crumb, dict) and isinstance(crumb.get("data"), dict):
            crumb["data"] = _scrub_mapping(crumb["data"])
    return event


def _scrub_mapping(data: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if any(word in str(key).lower() for word in _SECRET_WORDS):
            continue
        clean[key] = _scrub_mapping(value) if isinstance(value, dict) else value
    return clean
