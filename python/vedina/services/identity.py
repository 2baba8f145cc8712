"""The identity services of one worker process, built from its open resources.

>>> identity = IdentityServices.build(settings, resources)
>>> identity.start()            # background: API key last-used batching
>>> await identity.close()
"""

from __future__ import annotations

from dataclasses import dataclass

from vedina.config import Settings
from vedina.security.csrf import CsrfTokens
from vedina.security.jwt_keys import TokenKeys, build_token_keys
from vedina.security.keys import derive_key
from vedina.security.secretbox import SecretBox
from vedina.services.accounts import AccountService
from vedina.services.api_keys import ApiKeyService, UsageRecorder
from vedina.services.auth_state import AuthState
from vedina.services.login_guard import LoginGuard
from vedina.services.principals import Authenticator
from vedina.services.sessions import SessionService
from vedina.storage.api_keys import ApiKeyRepository
from vedina.storage.resources import Resources
from vedina.storage.sessions import SessionRepository
from vedina.storage.users import UserRepository


@dataclass
class IdentityServices:
    accounts: AccountService
    sessions: SessionService
    api_keys: ApiKeyService
    authenticator: Authenticator
    auth_state: AuthState
    csrf: CsrfTokens
    token_keys: TokenKeys

    @classmethod
    def build(cls, settings: Settings, resources: Resources, *, usage_interval: float = 10.0) -> IdentityServices:
        users = UserRepository(resources.engine)
        session_rows = SessionRepository(resources.engine)
        auth_state = AuthState(resources.shared, users, session_rows)
        token_keys = build_token_keys(settings)
        sessions = SessionService(
            engine=resources.engine, users=users, sessions=session_rows, auth_state=auth_state, token_keys=token_keys,
            login_guard=LoginGuard(settings),
        )
        key_rows = ApiKeyRepository(resources.engine)
        api_keys = ApiKeyService(
            repository=key_rows, secret_box=SecretBox.from_settings(settings), store=resources.shared,
            region=settings.sigv4_region, usage=UsageRecorder(key_rows, interval=usage_interval),
        )
        return cls(
            accounts=AccountService(engine=resources.engine, users=users, sessions=sessions, auth_state=auth_state),
            sessions=sessions,
            api_keys=api_keys,
            authenticator=Authenticator(token_keys=token_keys, auth_state=auth_state, api_keys=api_keys),
            auth_state=auth_state,
            csrf=CsrfTokens(derive_key(settings.session_secret, "csrf")),
            token_keys=token_keys,
        )

    def start(self) -> None:
        self.api_keys.usage.start()

    async def close(self) -> None:
        await self.api_keys.usage.close()


async def set_role_by_email(settings: Settings, *, email: str, role: str):
    """``vedina set-role EMAIL ROLE``: the operator's way to make the first admin."""
    from vedina.storage.resources import open_resources

    resources = await open_resources(settings)
    try:
        return await IdentityServices.build(settings, resources).accounts.set_role_by_email(email=email, role=role)
    finally:
        await resources.close()
