"""The auth service in process: codes, sessions, refresh rotation, logout, consent, keys, JWKS."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import msgspec
import pytest
from joserfc.jwk import KeySet

from tiergate_auth.app import create_app
from tiergate_auth.settings import OtpSettings
from tiergate_auth.signing import generate_pem
from tiergate_auth.sink import MailSink
from tiergate_proto.identity import Window
from tiergate_state.access_tokens import verify_access_token
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.redis_server import RedisServer

from .conftest import ADMIN, INTERNAL, Auth, auth_settings, new_email, wait_mail


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def assert_envelope(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code
    return error


async def test_sign_in_with_an_emailed_code(auth: Auth) -> None:
    email = new_email()
    tokens = await auth.sign_in(email)
    assert tokens["token_type"] == "Bearer"
    assert tokens["tier"] == "user"
    assert tokens["refresh_token"].startswith("tgr_")
    claims = claims_of(tokens["access_token"])
    assert claims["iss"] == "tiergate"
    assert claims["aud"] == "tiergate"
    assert claims["tier"] == "user"
    assert claims["exp"] - claims["iat"] == auth.settings.access_ttl_s
    me = await auth.client.get(
        "/v1/auth/me", headers={"authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json() == {"sub": claims["sub"], "email": email, "tier": "user", "store_chats": False}
    # Signing in again is the same user, in a new session.
    again = await auth.sign_in(email)
    assert claims_of(again["access_token"])["sub"] == claims["sub"]
    assert claims_of(again["access_token"])["sid"] != claims["sid"]


async def test_access_tokens_verify_against_the_published_jwks(auth: Auth) -> None:
    tokens = await auth.sign_in(new_email())
    jwks = (await auth.client.get("/.well-known/jwks.json")).json()
    assert [key["alg"] for key in jwks["keys"]] == ["EdDSA"]
    assert all("d" not in key for key in jwks["keys"])  # public halves only
    header = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[0] + "=="))
    assert header["alg"] == "EdDSA"
    assert header["kid"] == jwks["keys"][0]["kid"]
    claims = verify_access_token(
        tokens["access_token"],
        KeySet.import_key_set(jwks),
        issuer="tiergate",
        audience="tiergate",
        now=int(time.time()),
    )
    assert claims.tier == "user"


async def test_unknown_and_known_addresses_get_the_same_answer(
    redis_server: RedisServer, mail_sink: MailSink
) -> None:
    settings = auth_settings(
        redis_server.url, mail_sink.port, allowed_email_domains=["allowed.example"]
    )
    async with (
        serve_in_loop(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        allowed = f"a-{time.time_ns()}@allowed.example"
        other = f"b-{time.time_ns()}@elsewhere.example"
        first = await client.post("/v1/auth/otp/start", json={"email": allowed})
        second = await client.post("/v1/auth/otp/start", json={"email": other})
        assert (first.status_code, first.content) == (second.status_code, second.content)
        assert first.status_code == 202
        await wait_mail(mail_sink, allowed, 1)
        await asyncio.sleep(0.3)
        assert not [m for m in mail_sink.messages if other in m.to]


@pytest.mark.parametrize(
    "body",
    [{"email": "not-an-address"}, {"email": ""}, {"email": 5}, {}, {"email": "a@" + "b" * 300}],
)
async def test_bad_addresses_are_400(auth: Auth, body: dict[str, Any]) -> None:
    response = await auth.client.post("/v1/auth/otp/start", json=body)
    assert_envelope(response, 400)


async def test_hostile_bodies_get_envelopes(auth: Auth) -> None:
    cases = [
        (b"{", "application/json", 400),
        (b"[]", "application/json", 400),
        (b"email=a@b.c", "application/x-www-form-urlencoded", 415),
        (b'{"email": "' + b"a" * 20000 + b'@b.c"}', "application/json", 413),
    ]
    for body, content_type, status in cases:
        response = await auth.client.post(
            "/v1/auth/otp/verify", content=body, headers={"content-type": content_type}
        )
        assert_envelope(response, status)


async def test_the_sixth_attempt_is_refused_even_with_the_right_code(auth: Auth) -> None:
    email = new_email()
    await auth.client.post("/v1/auth/otp/start", json={"email": email})
    code = (await wait_mail(auth.sink, email, 1)).code
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        response = await auth.client.post(
            "/v1/auth/otp/verify", json={"email": email, "code": wrong}
        )
        assert_envelope(response, 401, "invalid_code")
        assert "www-authenticate" in response.headers
    response = await auth.client.post("/v1/auth/otp/verify", json={"email": email, "code": code})
    assert_envelope(response, 401, "invalid_code")


async def test_a_code_works_once(auth: Auth) -> None:
    email = new_email()
    await auth.client.post("/v1/auth/otp/start", json={"email": email})
    code = (await wait_mail(auth.sink, email, 1)).code
    body = {"email": email, "code": code}
    results = await asyncio.gather(
        *(auth.client.post("/v1/auth/otp/verify", json=body) for _ in range(5))
    )
    assert sorted(r.status_code for r in results) == [200, 401, 401, 401, 401]


async def test_codes_expire_and_resends_wait(
    redis_server: RedisServer, mail_sink: MailSink
) -> None:
    otp = OtpSettings(ttl_s=1, resend_cooldown_s=1)
    settings = auth_settings(redis_server.url, mail_sink.port, otp=otp)
    async with (
        serve_in_loop(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        email = new_email()
        assert (await client.post("/v1/auth/otp/start", json={"email": email})).status_code == 202
        too_soon = await client.post("/v1/auth/otp/start", json={"email": email})
        assert_envelope(too_soon, 429, "otp_cooldown")
        assert too_soon.headers["retry-after"] == "1"
        code = (await wait_mail(mail_sink, email, 1)).code
        await asyncio.sleep(1.2)
        expired = await client.post("/v1/auth/otp/verify", json={"email": email, "code": code})
        assert_envelope(expired, 401, "invalid_code")


async def test_codes_are_limited_per_address_and_per_client(
    redis_server: RedisServer, mail_sink: MailSink
) -> None:
    otp = OtpSettings(
        resend_cooldown_s=1,
        per_email=Window(limit=2, window_s=60),
        per_ip=Window(limit=3, window_s=60),
    )
    settings = auth_settings(redis_server.url, mail_sink.port, otp=otp)
    async with (
        serve_in_loop(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        email = new_email()
        for _ in range(2):
            assert (
                await client.post("/v1/auth/otp/start", json={"email": email})
            ).status_code == 202
            await asyncio.sleep(1.05)
        per_email = await client.post("/v1/auth/otp/start", json={"email": email})
        assert_envelope(per_email, 429, "rate_limit_exceeded")
        assert int(per_email.headers["retry-after"]) >= 1
        # The refused request still counted against the client address (3 of 3).
        assert (
            await client.post("/v1/auth/otp/start", json={"email": new_email()})
        ).status_code == 429


async def test_refresh_rotates_and_reuse_ends_the_session(auth: Auth) -> None:
    tokens = await auth.sign_in(new_email())
    first = tokens["refresh_token"]
    rotated = await auth.client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    second = rotated.json()["refresh_token"]
    assert second != first
    assert (
        claims_of(rotated.json()["access_token"])["sid"] == claims_of(tokens["access_token"])["sid"]
    )
    # Someone replays the first token: refused, and the whole session ends ...
    replay = await auth.client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert_envelope(replay, 401, "refresh_token_reused")
    # ... so the legitimate newer token and the access tokens stop working too.
    after = await auth.client.post("/v1/auth/refresh", json={"refresh_token": second})
    assert_envelope(after, 401, "invalid_refresh_token")
    me = await auth.client.get(
        "/v1/auth/me", headers={"authorization": f"Bearer {rotated.json()['access_token']}"}
    )
    assert_envelope(me, 401, "session_ended")


@pytest.mark.parametrize("token", ["", "tgr_x.y", "garbage", "tgr_" + "A" * 22 + "." + "B" * 43])
async def test_forged_refresh_tokens_are_refused(auth: Auth, token: str) -> None:
    response = await auth.client.post("/v1/auth/refresh", json={"refresh_token": token})
    assert_envelope(response, 401)


async def test_logout_ends_the_session(auth: Auth) -> None:
    tokens = await auth.sign_in(new_email())
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    assert (await auth.client.post("/v1/auth/logout", headers=bearer)).status_code == 200
    assert_envelope(await auth.client.get("/v1/auth/me", headers=bearer), 401, "session_ended")
    refresh = await auth.client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert_envelope(refresh, 401)
    internal = {"authorization": f"Bearer {INTERNAL}"}
    sid = claims_of(tokens["access_token"])["sid"]
    state = await auth.client.get(f"/v1/internal/sessions/{sid}", headers=internal)
    assert state.json() == {"active": False}


async def test_logout_with_the_refresh_token(auth: Auth) -> None:
    tokens = await auth.sign_in(new_email())
    out = await auth.client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert out.status_code == 200
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    assert_envelope(await auth.client.get("/v1/auth/me", headers=bearer), 401)


async def test_consent_is_recorded_and_carried_in_the_token(auth: Auth) -> None:
    tokens = await auth.sign_in(new_email())
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    response = await auth.client.put("/v1/auth/consent", json={"store_chats": True}, headers=bearer)
    assert response.status_code == 200
    assert response.json()["store_chats"] is True
    assert claims_of(response.json()["access_token"])["store_chats"] is True
    me = await auth.client.get("/v1/auth/me", headers=bearer)
    assert me.json()["store_chats"] is True
    refreshed = await auth.client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert claims_of(refreshed.json()["access_token"])["store_chats"] is True
    off = await auth.client.put("/v1/auth/consent", json={"store_chats": False}, headers=bearer)
    assert claims_of(off.json()["access_token"])["store_chats"] is False


async def test_key_rotation_keeps_old_tokens_valid(
    redis_server: RedisServer, mail_sink: MailSink, tmp_path: Any
) -> None:
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    old.write_bytes(generate_pem())
    new.write_bytes(generate_pem())
    from tiergate_auth.settings import SigningKey

    before = auth_settings(
        redis_server.url, mail_sink.port, signing_keys=[SigningKey(kid="k1", file=str(old))]
    )
    async with serve_in_loop(create_app(before)) as url, httpx.AsyncClient(base_url=url) as client:
        email = new_email()
        await client.post("/v1/auth/otp/start", json={"email": email})
        code = (await wait_mail(mail_sink, email, 1)).code
        token = (
            await client.post("/v1/auth/otp/verify", json={"email": email, "code": code})
        ).json()
    rollover = msgspec.structs.replace(
        before,
        signing_keys=[SigningKey(kid="k2", file=str(new)), SigningKey(kid="k1", file=str(old))],
    )
    async with (
        serve_in_loop(create_app(rollover)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        jwks = (await client.get("/.well-known/jwks.json")).json()
        assert [k["kid"] for k in jwks["keys"]] == ["k2", "k1"]
        me = await client.get(
            "/v1/auth/me", headers={"authorization": f"Bearer {token['access_token']}"}
        )
        assert me.status_code == 200  # signed by k1, still published
        fresh = await client.post(
            "/v1/auth/refresh", json={"refresh_token": token["refresh_token"]}
        )
        header = json.loads(
            base64.urlsafe_b64decode(fresh.json()["access_token"].split(".")[0] + "==")
        )
        assert header["kid"] == "k2"


async def test_admin_api_creates_lists_and_revokes_keys(auth: Auth) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    body = {
        "owner": "build-bot",
        "limits": {"requests": {"limit": 100, "window_s": 60}, "max_tokens": 2000},
    }
    created = await auth.client.post("/v1/admin/keys", json=body, headers=admin)
    assert created.status_code == 201
    key = created.json()["key"]
    info = created.json()["info"]
    assert key.startswith("tg_")
    assert len(base64.urlsafe_b64decode(key[3:] + "=")) >= 32
    assert info["tier"] == "agent"
    listed = (await auth.client.get("/v1/admin/keys", headers=admin)).json()["data"]
    assert [k["id"] for k in listed] == [info["id"]]
    assert "key" not in listed[0]
    # The internal lookup finds it by digest and records the use.
    from tiergate_state.hashing import digest

    from .conftest import PEPPER

    internal = {"authorization": f"Bearer {INTERNAL}"}
    found = await auth.client.post(
        "/v1/internal/keys/lookup",
        json={"digest": digest(PEPPER.encode(), "apikey", key)},
        headers=internal,
    )
    assert found.status_code == 200
    assert found.json()["owner"] == "build-bot"
    listed = (await auth.client.get("/v1/admin/keys", headers=admin)).json()["data"]
    assert listed[0]["last_used_at"] is not None
    revoked = await auth.client.delete(f"/v1/admin/keys/{info['id']}", headers=admin)
    assert revoked.status_code == 200
    gone = await auth.client.post(
        "/v1/internal/keys/lookup",
        json={"digest": digest(PEPPER.encode(), "apikey", key)},
        headers=internal,
    )
    assert_envelope(gone, 404)
    assert_envelope(await auth.client.delete(f"/v1/admin/keys/{info['id']}", headers=admin), 404)


async def test_admin_and_internal_apis_need_their_tokens(auth: Auth) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Bearer {INTERNAL}"}):
        assert_envelope(await auth.client.get("/v1/admin/keys", headers=headers), 401)
    bad_body = {"owner": "", "tier": "Not A Tier"}
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert_envelope(await auth.client.post("/v1/admin/keys", json=bad_body, headers=admin), 400)
    assert_envelope(
        await auth.client.get(
            "/v1/internal/sessions/x", headers={"authorization": f"Bearer {ADMIN}"}
        ),
        401,
    )


async def test_admin_api_is_off_without_a_token(
    redis_server: RedisServer, mail_sink: MailSink
) -> None:
    settings = auth_settings(redis_server.url, mail_sink.port, admin_token=None)
    async with (
        serve_in_loop(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.get("/v1/admin/keys", headers={"authorization": f"Bearer {ADMIN}"})
        assert_envelope(response, 404)


async def test_security_headers_on_every_response(auth: Auth) -> None:
    for response in (
        await auth.client.get("/healthz"),
        await auth.client.post("/v1/auth/otp/start", json={}),
        await auth.client.get("/no/such/path"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_in_process_store_without_redis(mail_sink: MailSink) -> None:
    settings = auth_settings(None, mail_sink.port, pepper=None)
    async with (
        serve_in_loop(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        auth = Auth(url=url, client=client, sink=mail_sink, settings=settings)
        tokens = await auth.sign_in(new_email())
        assert tokens["tier"] == "user"


async def test_store_outage_is_a_503_with_retry_after(mail_sink: MailSink) -> None:
    server = RedisServer().start()
    settings = auth_settings(server.url, mail_sink.port)
    try:
        async with (
            serve_in_loop(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            server.kill()
            response = await client.post("/v1/auth/otp/start", json={"email": new_email()})
            assert_envelope(response, 503)
            assert response.headers["retry-after"] == "2"
    finally:
        server.stop()
