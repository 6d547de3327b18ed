"""Who is asking, in process: anonymous, API keys (shared Redis), session tokens (JWKS), 401s.

A real redis-server and a real auth app back these tests; the engine is the fake.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey

from tiergate_auth.app import create_app as create_auth_app
from tiergate_auth.settings import AuthSettings, SmtpSettings
from tiergate_auth.sink import MailSink
from tiergate_gateway.settings import AuthLink, GatewaySettings, TierPolicy
from tiergate_proto.identity import Window
from tiergate_state.access_tokens import REGISTRY
from tiergate_state.store import StoreSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine
from tiergate_testkit.redis_server import RedisServer

from .auth_stack import ADMIN, INTERNAL, PEPPER, Stack, auth_stack, linked
from .conftest import ALIAS, chat_body, gateway_settings, last_chat, running


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


TIERS = {
    "anonymous": TierPolicy(models=[ALIAS], max_tokens=300, tools=False),
    "user": TierPolicy(models=["*"], max_tokens=1024),
    "agent": TierPolicy(models=["*"], max_tokens=4096),
}


def settings_for(
    engine: FakeEngine, auth_url: str, store: StoreSettings, **extra: Any
) -> GatewaySettings:
    base = msgspec.structs.replace(gateway_settings(engine.base_url), tiers=TIERS, **extra)
    return linked(base, auth_url, store)


@pytest.fixture
async def stack(
    engine: FakeEngine, redis_server: RedisServer, sink: MailSink
) -> AsyncIterator[Stack]:
    def gateway(auth_url: str, store: StoreSettings) -> GatewaySettings:
        return settings_for(engine, auth_url, store)

    async with auth_stack(engine, redis_server.url, sink, gateway) as running_stack:
        yield running_stack


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["www-authenticate"].startswith('Bearer realm="tiergate"')


async def test_no_credential_is_anonymous(stack: Stack) -> None:
    for headers in ({}, bearer("anonymous"), {"authorization": "Bearer"}):
        response = await stack.gateway.client.post(
            "/v1/chat/completions", json=chat_body(), headers=headers
        )
        assert response.status_code == 200
        assert response.headers["x-tiergate-tier"] == "anonymous"


async def test_signed_in_user_through_the_gateway(stack: Stack) -> None:
    tokens = await stack.sign_in()
    response = await stack.gateway.client.post(
        "/v1/chat/completions",
        json=chat_body(max_tokens=5000),
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == 200
    assert response.headers["x-tiergate-tier"] == "user"
    assert response.headers["x-tiergate-max-tokens"] == "1024"
    # Logout through the gateway: the token is refused within the cache period.
    out = await stack.gateway.client.post("/v1/auth/logout", headers=bearer(tokens["access_token"]))
    assert out.status_code == 200
    await asyncio.sleep(1.1)
    after = await stack.gateway.client.post(
        "/v1/chat/completions", json=chat_body(), headers=bearer(tokens["access_token"])
    )
    assert_401(after)
    assert after.json()["error"]["code"] == "session_ended"


async def test_api_key_is_an_agent_with_its_own_limits(stack: Stack) -> None:
    key, key_id = await stack.create_key(
        limits={"max_tokens": 50, "requests": {"limit": 2, "window_s": 60}}
    )
    for remaining in ("1", "0"):
        response = await stack.gateway.client.post(
            "/v1/chat/completions", json=chat_body(max_tokens=500), headers=bearer(key)
        )
        assert response.status_code == 200
        assert response.headers["x-tiergate-tier"] == "agent"
        assert response.headers["x-tiergate-max-tokens"] == "50"
        assert response.headers["x-ratelimit-remaining-requests"] == remaining
    assert last_chat(stack.gateway.engine).body["max_tokens"] == 50  # type: ignore[index]
    refused = await stack.gateway.client.post(
        "/v1/chat/completions", json=chat_body(), headers=bearer(key)
    )
    assert refused.status_code == 429
    listed = await stack.auth.get("/v1/admin/keys", headers=bearer(ADMIN))
    assert listed.json()["data"][0]["last_used_at"] is not None
    del key_id


async def test_a_revoked_key_stops_working_within_the_cache_period(stack: Stack) -> None:
    key, key_id = await stack.create_key()
    ok = await stack.gateway.client.post(
        "/v1/chat/completions", json=chat_body(), headers=bearer(key)
    )
    assert ok.status_code == 200
    await stack.revoke(key_id)
    started = time.monotonic()
    while True:
        response = await stack.gateway.client.post(
            "/v1/chat/completions", json=chat_body(), headers=bearer(key)
        )
        if response.status_code == 401:
            break
        assert time.monotonic() - started < 5, "revocation not seen within 5 s"
        await asyncio.sleep(0.1)
    assert_401(response)
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer tg_not-a-real-key",
        "Bearer garbage",
        "Basic dXNlcjpwYXNz",
        "Bearer a.b.c",
        "Bearer anonymous-not-quite",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    ],
)
async def test_bad_credentials_are_401_never_anonymous(stack: Stack, authorization: str) -> None:
    response = await stack.gateway.client.post(
        "/v1/chat/completions", json=chat_body(), headers={"authorization": authorization}
    )
    assert_401(response)
    models = await stack.gateway.client.get("/v1/models", headers={"authorization": authorization})
    assert_401(models)


async def test_forged_and_expired_session_tokens(stack: Stack) -> None:
    tokens = await stack.sign_in(through_gateway=False)
    header, payload, signature = tokens["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))

    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    tampered = f"{header}.{b64({**claims, 'tier': 'agent'})}.{signature}"
    stranger = OKPKey.generate_key("Ed25519", parameters={"kid": "evil"}, private=True)
    kid = json.loads(base64.urlsafe_b64decode(header + "=="))["kid"]
    foreign = jwt.encode({"alg": "EdDSA", "kid": kid}, claims, stranger, registry=REGISTRY)
    expired = jwt.encode(
        {"alg": "EdDSA", "kid": kid},
        {**claims, "exp": int(time.time()) - 3600},
        stranger,
        registry=REGISTRY,
    )
    unknown_kid = jwt.encode({"alg": "EdDSA", "kid": "evil"}, claims, stranger, registry=REGISTRY)
    for token in (tampered, foreign, expired, unknown_kid):
        response = await stack.gateway.client.post(
            "/v1/chat/completions", json=chat_body(), headers=bearer(token)
        )
        assert_401(response)
    good = await stack.gateway.client.post(
        "/v1/chat/completions", json=chat_body(), headers=bearer(tokens["access_token"])
    )
    assert good.status_code == 200


async def test_models_list_shows_what_the_tier_may_use(stack: Stack) -> None:
    anonymous = await stack.gateway.client.get("/v1/models")
    assert [m["id"] for m in anonymous.json()["data"]] == [ALIAS]
    assert anonymous.headers["x-tiergate-tier"] == "anonymous"


async def test_tier_policy_forbids_tools_for_anonymous(stack: Stack) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    response = await stack.gateway.client.post("/v1/chat/completions", json=chat_body(tools=tools))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["param"] == "tools"
    assert "anonymous" in error["message"]
    key, _ = await stack.create_key()
    ok = await stack.gateway.client.post(
        "/v1/chat/completions", json=chat_body(tools=tools), headers=bearer(key)
    )
    assert ok.status_code == 200


async def test_proxied_auth_sees_the_client_address(stack: Stack) -> None:
    # The gateway replaces X-Forwarded-For with the address it resolved (its peer here, since
    # no proxy is trusted): a client cannot pick the address auth limits it by.
    response = await stack.gateway.client.post(
        "/v1/auth/otp/start",
        json={"email": "x@example.org"},
        headers={"x-forwarded-for": "6.6.6.6"},
    )
    assert response.status_code == 202
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_disallowed_model_names_the_tier(
    engine: FakeEngine, redis_server: RedisServer
) -> None:
    from tiergate_gateway.settings import BackendSettings, ModelAlias

    base = gateway_settings(engine.base_url)
    settings = msgspec.structs.replace(
        base,
        backends={**base.backends, "big": BackendSettings(base_url=f"{engine.base_url}/v1")},
        models=[*base.models, ModelAlias(id="tiergate-large", backend="big", engine_model="big")],
        tiers={"anonymous": TierPolicy(models=[ALIAS], requests=Window(limit=100, window_s=60))},
        auth=AuthLink(url=None),
    )
    async with running(settings, engine) as gateway:
        response = await gateway.client.post(
            "/v1/chat/completions", json=chat_body(model="tiergate-large")
        )
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["type"] == "permission_error"
        assert error["code"] == "model_not_allowed"
        assert "'anonymous' tier" in error["message"]


async def test_cookie_mode_through_the_gateway(
    engine: FakeEngine, redis_server: RedisServer, sink: MailSink
) -> None:
    from tiergate_auth.settings import CookieSettings

    store = StoreSettings(url=redis_server.url, key_prefix=f"c{uuid.uuid4().hex[:8]}")
    auth_settings = AuthSettings(
        store=store,
        pepper=PEPPER,
        internal_token=INTERNAL,
        smtp=SmtpSettings(port=sink.port),
        cookies=CookieSettings(enabled=True, secure=False),  # plain http in this test
    )
    async with serve_in_loop(create_auth_app(auth_settings)) as auth_url:
        settings = settings_for(engine, auth_url, store)
        link = msgspec.structs.replace(settings.auth, access_cookie="tg_access")
        async with running(msgspec.structs.replace(settings, auth=link), engine) as gateway:
            client = gateway.client
            email = f"c-{uuid.uuid4().hex[:8]}@example.org"
            await client.post("/v1/auth/otp/start", json={"email": email})
            mail = await asyncio.to_thread(sink.wait_for, email, 1, 10.0)
            verified = await client.post(
                "/v1/auth/otp/verify",
                json={"email": email, "code": mail.code},
                headers={"x-tiergate-session": "cookie"},
            )
            assert verified.status_code == 200
            assert verified.json()["access_token"] is None
            set_cookies = verified.headers.get_list("set-cookie")
            assert len(set_cookies) == 2  # two cookies, not one folded header
            access = next(c for c in set_cookies if c.startswith("tg_access="))
            assert "httponly" in access.lower()
            assert "samesite=strict" in access.lower()
            # httpx keeps the cookies; the chat request is signed in by the cookie alone.
            response = await client.post("/v1/chat/completions", json=chat_body())
            assert response.status_code == 200
            assert response.headers["x-tiergate-tier"] == "user"
            refreshed = await client.post(
                "/v1/auth/refresh", headers={"x-tiergate-session": "cookie"}
            )
            assert refreshed.status_code == 200
