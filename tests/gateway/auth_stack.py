"""An auth app and a gateway that trusts it, in process, for tests that need signed-in callers
(sessions through the gateway's `/v1/auth/*` relay, API keys from the admin API)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from tiergate_auth.app import create_app as create_auth_app
from tiergate_auth.settings import AuthSettings, SmtpSettings
from tiergate_auth.sink import MailSink
from tiergate_gateway.settings import AuthLink, GatewaySettings
from tiergate_state.store import StoreSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import Gateway, running

PEPPER = "pepper-shared-by-auth-and-gateway-0123"
ADMIN = "admin-token-for-gateway-tests-0123456789"
INTERNAL = "internal-token-for-gateway-tests-01234"


@dataclass
class Stack:
    gateway: Gateway
    auth: httpx.AsyncClient
    sink: MailSink
    prefix: str

    async def sign_in(self, through_gateway: bool = True) -> dict[str, Any]:
        client = self.gateway.client if through_gateway else self.auth
        email = f"u-{uuid.uuid4().hex[:8]}@example.org"
        assert (await client.post("/v1/auth/otp/start", json={"email": email})).status_code == 202
        mail = await asyncio.to_thread(self.sink.wait_for, email, 1, 10.0)
        response = await client.post(
            "/v1/auth/otp/verify", json={"email": email, "code": mail.code}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def create_key(self, **body: Any) -> tuple[str, str]:
        response = await self.auth.post(
            "/v1/admin/keys",
            json={"owner": "tests", **body},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        assert response.status_code == 201, response.text
        return response.json()["key"], response.json()["info"]["id"]

    async def revoke(self, key_id: str) -> None:
        response = await self.auth.delete(
            f"/v1/admin/keys/{key_id}", headers={"authorization": f"Bearer {ADMIN}"}
        )
        assert response.status_code == 200


def linked(settings: GatewaySettings, auth_url: str, store: StoreSettings) -> GatewaySettings:
    """`settings` trusting the auth service at `auth_url`, on the shared `store`."""
    link = AuthLink(url=auth_url, pepper=PEPPER, internal_token=INTERNAL, cache_ttl_s=1.0)
    return msgspec.structs.replace(settings, auth=link, store=store)


@asynccontextmanager
async def auth_stack(
    engine: FakeEngine,
    redis_url: str,
    sink: MailSink,
    gateway: Callable[[str, StoreSettings], GatewaySettings],
) -> AsyncIterator[Stack]:
    """Auth and gateway on one fresh key prefix; `gateway(auth_url, store)` gives the
    gateway's settings."""
    prefix = f"g{uuid.uuid4().hex[:8]}"
    store = StoreSettings(url=redis_url, key_prefix=prefix)
    auth_settings = AuthSettings(
        store=store,
        pepper=PEPPER,
        admin_token=ADMIN,
        internal_token=INTERNAL,
        smtp=SmtpSettings(port=sink.port),
        trusted_proxies=["127.0.0.1/32"],  # the gateway, which relays /v1/auth/*
    )
    async with (
        serve_in_loop(create_auth_app(auth_settings)) as auth_url,
        httpx.AsyncClient(base_url=auth_url, timeout=10) as auth,
        running(gateway(auth_url, store), engine) as running_gateway,
    ):
        yield Stack(gateway=running_gateway, auth=auth, sink=sink, prefix=prefix)
