"""Admin feedback on both backends: filters, pages, JSONL export, audit rows; database down."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tiergate_auth.app import create_app
from tiergate_auth.settings import DatabaseSettings
from tiergate_auth.sink import MailSink
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.postgres import PostgresServer
from tiergate_testkit.redis_server import RedisServer

from .conftest import ADMIN_HEADERS, INTERNAL_HEADERS, RecordsAuth, auth_settings, chat, feedback
from .test_auth_app import assert_envelope


async def _put(auth: RecordsAuth, **fields: Any) -> None:
    response = await auth.client.put(
        "/v1/internal/feedback", json=feedback(**fields), headers=INTERNAL_HEADERS
    )
    assert response.status_code == 200, response.text


async def test_filters_pages_and_audit(records_auth: RecordsAuth) -> None:
    await _put(records_auth, model="small", rating="up")
    await _put(records_auth, model="small", rating="down", flag="unsafe")
    await _put(records_auth, model="large", rating="down", flag="unsafe")
    await _put(records_auth, model="large", flag="wrong", rating=None)
    client = records_auth.client

    async def answer_models(**params: str) -> list[tuple[str, str | None]]:
        page = await client.get("/v1/admin/feedback", params=params, headers=ADMIN_HEADERS)
        assert page.status_code == 200, page.text
        return [(item["model"], item["flag"]) for item in page.json()["data"]]

    assert await answer_models() == [
        ("large", "wrong"), ("large", "unsafe"), ("small", "unsafe"), ("small", None)
    ]  # fmt: skip
    assert await answer_models(model="small") == [("small", "unsafe"), ("small", None)]
    assert await answer_models(flag="unsafe") == [("large", "unsafe"), ("small", "unsafe")]
    assert await answer_models(rating="down", model="large") == [("large", "unsafe")]
    assert await answer_models(since=str(int(time.time()) + 3600)) == []
    assert len(await answer_models(until=str(int(time.time()) + 3600))) == 4
    seen: list[int] = []
    after: int | None = None
    while True:
        params = {"limit": "3", **({"after": str(after)} if after else {})}
        page = (await client.get("/v1/admin/feedback", params=params, headers=ADMIN_HEADERS)).json()
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == 4
    audits = await records_auth.app.state.records.audit_rows("feedback.list")
    assert len(audits) == 8
    assert audits[1].detail == {"model": "small"}
    assert audits[0].actor.startswith("admin@")


async def test_jsonl_export(records_auth: RecordsAuth) -> None:
    for _ in range(3):
        await _put(records_auth, model="m1", flag="offensive")
    await _put(records_auth, model="m2")
    async with records_auth.client.stream(
        "GET", "/v1/admin/feedback/export", params={"model": "m1"}, headers=ADMIN_HEADERS
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/jsonl")
        lines = [json.loads(line) async for line in response.aiter_lines() if line]
    assert len(lines) == 3
    assert {line["model"] for line in lines} == {"m1"}
    assert all(line["object"] == "feedback" for line in lines)
    audits = await records_auth.app.state.records.audit_rows("feedback.export")
    assert [a.detail for a in audits] == [{"model": "m1"}]


async def test_key_actions_are_audited(records_auth: RecordsAuth) -> None:
    created = await records_auth.client.post(
        "/v1/admin/keys", json={"owner": "bot", "tier": "agent"}, headers=ADMIN_HEADERS
    )
    key_id = created.json()["info"]["id"]
    await records_auth.client.delete(f"/v1/admin/keys/{key_id}", headers=ADMIN_HEADERS)
    rows = await records_auth.app.state.records.audit_rows()
    assert [(r.action, r.target) for r in rows] == [
        ("api_key.create", key_id), ("api_key.revoke", key_id)
    ]  # fmt: skip


async def test_hostile_admin_queries(records_auth: RecordsAuth) -> None:
    for path in ("/v1/admin/feedback", "/v1/admin/feedback/export"):
        for params in ({"flag": "nope"}, {"rating": "meh"}, {"since": "yesterday"},
                       {"until": "-5"}, {"model": "x" * 300}, {"limit": "1000"}):  # fmt: skip
            if path.endswith("export") and "limit" in params:
                continue
            response = await records_auth.client.get(path, params=params, headers=ADMIN_HEADERS)
            assert_envelope(response, 400)
        assert_envelope(await records_auth.client.get(path), 401)
    assert_envelope(
        await records_auth.client.get(
            "/v1/admin/feedback", params={"after": "x"}, headers=ADMIN_HEADERS
        ),
        400,
    )


async def test_database_gone_mid_run_is_503(
    postgres: PostgresServer, redis_server: RedisServer, mail_sink: MailSink
) -> None:
    name = postgres.create_database()
    settings = auth_settings(
        redis_server.url,
        mail_sink.port,
        database=DatabaseSettings(url=postgres.url(name), upgrade_on_start=True),
    )
    app = create_app(settings)
    try:
        async with (
            serve_in_loop(app) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as client,
        ):
            auth = RecordsAuth(url=url, client=client, sink=mail_sink, settings=settings, app=app)
            sub, headers = await auth.user(consent=True)
            ok = await client.post("/v1/internal/chats", json=chat(sub), headers=INTERNAL_HEADERS)
            assert ok.json() == {"stored": True}
            postgres.drop_database(name)
            calls = [
                ("GET", "/v1/me/chats", headers, None),
                ("DELETE", "/v1/me/chats", headers, None),
                ("POST", "/v1/internal/chats", INTERNAL_HEADERS, chat(sub)),
                ("PUT", "/v1/internal/feedback", INTERNAL_HEADERS, feedback()),
                ("GET", "/v1/admin/feedback", ADMIN_HEADERS, None),
            ]
            for method, path, auth_headers, body in calls:
                response = await client.request(method, path, headers=auth_headers, json=body)
                assert_envelope(response, 503, "records_unavailable")
                assert response.headers["retry-after"] == "2"
            # Withdrawal with the database down: 503, not a silent success ...
            withdraw = await client.put(
                "/v1/auth/consent", json={"store_chats": False}, headers=headers
            )
            assert_envelope(withdraw, 503, "records_unavailable")
            # ... and from then on nothing more is stored against the user's will.
            postgres.psql(f'CREATE DATABASE "{name}"')
            await app.state.records.db.check()
            again = await client.post(
                "/v1/internal/chats", json=chat(sub), headers=INTERNAL_HEADERS
            )
            assert again.json() == {"stored": False}
            retry = await client.put(
                "/v1/auth/consent", json={"store_chats": False}, headers=headers
            )
            assert retry.status_code == 200
    finally:
        postgres.drop_database(name)


@pytest.mark.parametrize("path", ["/v1/admin/feedback", "/v1/admin/feedback/export"])
async def test_admin_token_required(records_auth: RecordsAuth, path: str) -> None:
    wrong = {"authorization": "Bearer " + "w" * 40}
    assert_envelope(await records_auth.client.get(path, headers=wrong), 401)
