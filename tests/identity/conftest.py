"""Identity test helpers: a live server per profile (own process tree, rate limits off so
the suites can log in as often as they need), accounts, and the mail the server sends."""

from __future__ import annotations

import email
import os
import re
import subprocess
import time
import uuid
from email import policy
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import PROFILES, VEDINA, LiveServer, query_rows, require_profile, server_pool
from vedina.config import load_settings

PASSWORD = "correct horse battery staple"


class IdentityServer:
    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.env = live.env
        self.base_url = live.base_url
        self.settings = load_settings(live.env)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=15, **kwargs)

    # -- accounts -------------------------------------------------------------

    def register(self, http: httpx.Client, *, name: str = "Tester") -> str:
        address = f"user-{uuid.uuid4().hex[:12]}@example.org"
        response = http.post("/api/auth/register", json={"email": address, "password": PASSWORD, "display_name": name})
        assert response.status_code == 202, response.text
        return address

    def login(self, http: httpx.Client, address: str, *, password: str = PASSWORD, **extra) -> httpx.Response:
        return http.post("/api/auth/login", json={"email": address, "password": password, **extra})

    def verify(self, http: httpx.Client, address: str) -> None:
        """Confirm the address with the token the verification email carries."""
        token = self.mail_token(address, "Confirm your email address")
        assert http.post("/api/auth/verify-email", json={"token": token}).status_code == 200

    def token(self, http: httpx.Client, address: str) -> str:
        response = self.login(http, address)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def set_role(self, address: str, role: str) -> None:
        subprocess.run([VEDINA, "set-role", address, role], env={**os.environ, **self.env}, check=True,
                       capture_output=True, timeout=60)

    # -- outside views ----------------------------------------------------------

    def mail_token(self, address: str, subject: str, *, timeout: float = 30) -> str:
        """The token in the newest email to ``address`` with ``subject`` (written by the mail job)."""
        return re.search(r"Token: (\S+)", self.mail_body(address, subject, timeout=timeout)).group(1)

    def mail_body(self, address: str, subject: str, *, timeout: float = 30) -> str:
        """The text of the newest email to ``address`` with ``subject``."""
        folder = Path(self.env["DATA_DIR"], "mail")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in sorted(folder.glob("*.eml"), reverse=True) if folder.exists() else []:
                message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
                if message["To"] == address and message["Subject"] == subject:
                    return message.get_content()
            time.sleep(0.2)
        raise TimeoutError(f"no email {subject!r} to {address}")

    def count_where(self, table, condition) -> int:
        return self.query(sa.select(sa.func.count().label("n")).select_from(table).where(condition))[0]["n"]

    def query(self, statement) -> list[dict]:
        return query_rows(self.settings, statement)

    def count(self, table) -> int:
        return self.query(sa.select(sa.func.count().label("n")).select_from(table))[0]["n"]


@pytest.fixture(scope="session")
def identity_servers(live_data):
    with server_pool(lambda profile: IdentityServer(
        LiveServer(server="granian", env={**live_data(profile), "RATE_LIMIT_ENABLED": "false"}, workers=2)
    )) as get:
        yield get


@pytest.fixture(params=PROFILES)
def server(request, identity_servers) -> IdentityServer:
    require_profile(request.param)
    return identity_servers(request.param)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
