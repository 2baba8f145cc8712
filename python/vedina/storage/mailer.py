"""Sending email: a tiny transport interface, an SMTP one and an embedded one that writes files.

- :class:`FileMailTransport` (no ``SMTP_URL``): each message becomes an
  ``.eml`` file under ``DATA_DIR/mail`` (open it with any mail client, or read
  it in tests). Written to a temporary name and renamed, so a reader never
  sees half a message.
- :class:`SmtpMailTransport` (``SMTP_URL=smtp://user:pass@host:587`` uses
  STARTTLS; ``smtps://`` implicit TLS on 465; ``smtp+plain://`` no TLS, for a
  local relay only).
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from vedina.config import Settings
from vedina.storage.clock import now_ms


class MailTransport(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class FileMailTransport:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._write, message)

    def _write(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{now_ms()}-{uuid.uuid4().hex}.eml"
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(message.as_bytes())
        os.replace(temporary, self.directory / name)


class SmtpMailTransport:
    def __init__(self, url: str, *, timeout: float = 30) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps", "smtp+plain"} or not parts.hostname:
            raise ValueError("SMTP_URL must be smtp://, smtps:// or smtp+plain:// with a host")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (465 if parts.scheme == "smtps" else 587)
        self._user = unquote(parts.username or "")
        self._password = unquote(parts.password or "")
        self._timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        if self._scheme == "smtps":
            client = smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout, context=context)
        else:
            client = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        with client:
            if self._scheme == "smtp":
                client.starttls(context=context)
            if self._user:
                client.login(self._user, self._password)
            client.send_message(message)


def mail_transport(settings: Settings) -> MailTransport:
    if settings.smtp_url:
        return SmtpMailTransport(settings.smtp_url)
    return FileMailTransport(Path(settings.data_dir, "mail").resolve())
