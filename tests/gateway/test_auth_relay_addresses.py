"""Whose address the auth service's OTP limits count: the real client's, never one it claims.

Issue 10: the auth service believed `X-Forwarded-For` from 127.0.0.1 by default, so any local
caller chose the address its OTP starts were counted against (25 of 25 accepted). Now it trusts
no proxy unless configured; the gateway, configured as auth's trusted proxy, relays
`/v1/auth/*` with the address it resolved itself.

Distinct clients are real sockets bound to distinct loopback addresses (127.0.0.2, …), so the
gateway sees them as distinct peers without trusting anything itself.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec

from tiergate_auth.app import create_app as create_auth_app
from tiergate_auth.settings import AuthSettings, OtpSettings, SmtpSettings
from tiergate_auth.sink import MailSink
from tiergate_gateway.app import create_app
from tiergate_gateway.settings import AuthLink
from tiergate_proto.identity import Window
from tiergate_state.store import StoreSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import gateway_settings

PER_ADDRESS = 3
START = "/v1/auth/otp/start"


def auth_settings(sink: MailSink, **overrides: Any) -> AuthSettings:
    settings = AuthSettings(
        store=StoreSettings(url=None),
        smtp=SmtpSettings(port=sink.port),
        # One address may start PER_ADDRESS sign-ins; the per-address limit is what is tested.
        otp=OtpSettings(per_ip=Window(limit=PER_ADDRESS, window_s=600)),
    )
    return msgspec.structs.replace(settings, **overrides)


@asynccontextmanager
async def client_at(url: str, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose connections come from `address` (any 127.x.y.z is local on Linux)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=10) as client:
        yield client


async def start(client: httpx.AsyncClient, forwarded_for: str | None = None) -> int:
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    email = f"u-{uuid.uuid4().hex[:10]}@example.org"  # a new address: only per-IP limits bite
    response = await client.post(START, json={"email": email}, headers=headers)
    if response.status_code == 429:
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
    return response.status_code


def test_auth_trusts_no_proxy_by_default() -> None:
    assert AuthSettings().trusted_proxies == []


async def test_a_spoofed_forwarded_for_does_not_change_the_accounting(sink: MailSink) -> None:
    async with (
        serve_in_loop(create_auth_app(auth_settings(sink))) as url,
        client_at(url, "127.0.0.1") as local,
    ):
        # Every start claims another address; all count against the caller's own.
        statuses = [await start(local, f"203.0.113.{i}") for i in range(PER_ADDRESS + 2)]
        assert statuses == [202] * PER_ADDRESS + [429, 429]
        assert await start(local) == 429


async def test_relayed_starts_count_per_real_client(sink: MailSink, engine: FakeEngine) -> None:
    settings = auth_settings(sink, trusted_proxies=["127.0.0.1/32"])  # the gateway's address
    async with serve_in_loop(create_auth_app(settings)) as auth_url:
        gateway = msgspec.structs.replace(
            gateway_settings(engine.base_url), auth=AuthLink(url=auth_url)
        )
        async with (
            serve_in_loop(create_app(gateway)) as url,
            client_at(url, "127.0.0.2") as first,
            client_at(url, "127.0.0.3") as second,
            client_at(auth_url, "127.0.0.4") as direct,
        ):
            # The first client's X-Forwarded-For is replaced by the gateway: it cannot spread
            # its starts over addresses it makes up.
            statuses = [await start(first, f"198.51.100.{i}") for i in range(PER_ADDRESS + 1)]
            assert statuses == [202] * PER_ADDRESS + [429]
            # Another client through the same gateway has its own allowance.
            assert [await start(second) for _ in range(PER_ADDRESS)] == [202] * PER_ADDRESS
            assert await start(second) == 429
            # A caller that is not the gateway is not believed either.
            spoofed = [await start(direct, "127.0.0.9") for _ in range(PER_ADDRESS + 1)]
            assert spoofed == [202] * PER_ADDRESS + [429]


async def test_without_the_gateway_trusted_relayed_starts_share_its_address(
    sink: MailSink, engine: FakeEngine
) -> None:
    # What the default means for a deployment that forgets the setting: the OTP limits count
    # the gateway as one client (safe, but strict) -- hence the explicit setting in
    # config/auth.toml and in the end-to-end tests.
    async with serve_in_loop(create_auth_app(auth_settings(sink))) as auth_url:
        gateway = msgspec.structs.replace(
            gateway_settings(engine.base_url), auth=AuthLink(url=auth_url)
        )
        async with (
            serve_in_loop(create_app(gateway)) as url,
            client_at(url, "127.0.0.2") as first,
            client_at(url, "127.0.0.3") as second,
        ):
            assert [await start(first) for _ in range(PER_ADDRESS)] == [202] * PER_ADDRESS
            assert await start(second) == 429
