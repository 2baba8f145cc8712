"""``mail``: account emails (verification, password reset), sent through the configured transport.

The payload names a template and a user, never a token: the token is created
here, at delivery time, and only its hash is stored (see vedina.services.tokens).
Delivery is at least once, so a user may rarely get the same email twice;
each copy carries a valid token until one of them is used.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.config import Settings
from vedina.services import tokens
from vedina.storage.mailer import MailTransport
from vedina.storage.users import UserRepository

log = logging.getLogger(__name__)

TOPIC = "mail"

_TEMPLATES = {
    tokens.VERIFY_EMAIL: (
        "Confirm your email address",
        "Hello {name},\n\nconfirm your email address for Vedina by opening this link:\n\n"
        "{base}/verify-email?token={token}\n\nor by sending this token to POST /api/auth/verify-email:\n\n"
        "Token: {token}\n\nThe link is valid for 48 hours.\n",
    ),
    tokens.ACCOUNT_EXISTS: (
        "Someone tried to create an account with your address",
        "Hello {name},\n\nsomeone tried to create a Vedina account with this email address, which already has\n"
        "one. If it was you, log in instead, or reset your password at\n\n{base}/reset-password\n\n"
        "If it was not you, nothing has changed and you can ignore this email.\n",
    ),
    tokens.RESET_PASSWORD: (
        "Reset your password",
        "Hello {name},\n\nsomeone (hopefully you) asked to reset your Vedina password. Open this link:\n\n"
        "{base}/reset-password?token={token}\n\nor send this token to POST /api/auth/password-reset/confirm:\n\n"
        "Token: {token}\n\nThe link is valid for 30 minutes and works once. If you did not ask, ignore this email.\n",
    ),
}


def render(settings: Settings, *, template: str, to: str, name: str, token: str) -> EmailMessage:
    subject, body = _TEMPLATES[template]
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="vedina.invalid")
    message.set_content(body.format(name=name or to, base=settings.public_base_url.rstrip("/"), token=token))
    return message


def handler(*, settings: Settings, users: UserRepository, engine: AsyncEngine, transport: MailTransport):
    async def handle(payload: dict[str, Any]) -> None:
        template, user_id = payload["template"], int(payload["user_id"])
        user = await users.get(user_id)
        if user is None or user["status"] != "active":
            return  # deleted or suspended since: send nothing
        if template == tokens.VERIFY_EMAIL and user["email_verified_at"] is not None:
            return
        token = ""
        if template != tokens.ACCOUNT_EXISTS:
            async with engine.begin() as conn:
                token = await tokens.issue(conn, user_id=user_id, purpose=template)
        await transport.send(
            render(settings, template=template, to=user["email"], name=user["display_name"], token=token)
        )
        log.info("account email sent", extra={"template": template, "user_id": user_id})

    return handle
