"""A burst of requests with API keys not cached yet, through the real gateway and auth apps.

Issue 10, defect 3: without a shared store the gateway asks the auth service's internal API,
and 1,000 concurrent requests with one new key got 459 to 1,000 times `503 auth_unavailable` while
auth was healthy. Here both apps run without a store (as in `make run`) and `GET /v1/models`
(which resolves the principal: its tier picks the list) takes the burst.

The load comes from aiohttp: httpx's connection pool spends time quadratic in its connections
with 1,000 of them open, which would make the client, not the gateway, the bottleneck.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import msgspec
import pytest

from tiergate_auth.app import create_app as create_auth_app
from tiergate_auth.settings import AuthSettings, SmtpSettings
from tiergate_gateway.app import create_app
from tiergate_gateway.settings import AuthLink
from tiergate_state.store import StoreSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine

from .auth_stack import ADMIN, INTERNAL, PEPPER
from .conftest import gateway_settings
from .test_identity import TIERS


class CountingPaths:
    """ASGI middleware counting the requests per path that reach the wrapped app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths[scope["path"]] += 1
        await self.app(scope, receive, send)


@dataclass
class Storeless:
    gateway_url: str
    auth: httpx.AsyncClient
    counted: CountingPaths

    async def new_keys(self, count: int) -> list[str]:
        keys = []
        for _ in range(count):
            response = await self.auth.post(
                "/v1/admin/keys",
                json={"owner": "burst"},
                headers={"authorization": f"Bearer {ADMIN}"},
            )
            assert response.status_code == 201, response.text
            keys.append(response.json()["key"])
        return keys

    def lookups(self) -> int:
        return self.counted.paths["/v1/internal/keys/lookup"]


@pytest.fixture
async def storeless(engine: FakeEngine) -> AsyncIterator[Storeless]:
    auth_settings = AuthSettings(
        store=StoreSettings(url=None),
        pepper=PEPPER,
        admin_token=ADMIN,
        internal_token=INTERNAL,
        smtp=SmtpSettings(port=1),  # no mail in these tests
    )
    counted = CountingPaths(create_auth_app(auth_settings))
    async with (
        serve_in_loop(counted) as auth_url,
        httpx.AsyncClient(base_url=auth_url, timeout=10) as auth,
    ):
        link = AuthLink(url=auth_url, pepper=PEPPER, internal_token=INTERNAL, cache_ttl_s=5)
        settings = msgspec.structs.replace(
            gateway_settings(engine.base_url), tiers=TIERS, auth=link, store=StoreSettings()
        )
        assert settings.store.url is None
        async with serve_in_loop(create_app(settings)) as gateway_url:
            yield Storeless(gateway_url=gateway_url, auth=auth, counted=counted)


async def burst(url: str, keys: list[str], count: int) -> collections.Counter[int]:
    """`count` concurrent `GET /v1/models`, round-robin over `keys`: statuses by count."""
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(key: str) -> int:
            headers = {"authorization": f"Bearer {key}"}
            async with session.get(f"{url}/v1/models", headers=headers) as response:
                await response.read()
                if response.status == 200:
                    assert response.headers["x-tiergate-tier"] == "agent"
                return response.status

        statuses = await asyncio.gather(*(one(keys[i % len(keys)]) for i in range(count)))
    return collections.Counter(statuses)


async def test_a_burst_with_one_new_key_is_answered_and_costs_one_lookup(
    storeless: Storeless,
) -> None:
    [key] = await storeless.new_keys(1)
    statuses = await burst(storeless.gateway_url, [key], 1000)
    assert statuses == {200: 1000}
    assert storeless.lookups() == 1


async def test_a_burst_with_many_new_keys_is_answered(storeless: Storeless) -> None:
    # Busy agents after a restart: 200 new keys at once. 500 requests (not 1,000): the load
    # shares one event loop with both apps, and its lag at 1,000 (~0.45 s) would come within
    # a few times of the lookups' 2 s connect timeout on a slow machine.
    keys = await storeless.new_keys(200)
    statuses = await burst(storeless.gateway_url, keys, 500)
    assert statuses == {200: 500}
    assert storeless.lookups() == 200
