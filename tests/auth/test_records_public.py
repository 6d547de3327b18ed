"""`/v1/me/chats` on both backends: pages, export, erasure, isolation, 401s, withdrawal, purge."""

from __future__ import annotations

import time

from .conftest import INTERNAL_HEADERS, Auth, RecordsAuth, chat, new_email
from .test_auth_app import assert_envelope


async def _store(auth: RecordsAuth, body: dict[str, object]) -> None:
    response = await auth.client.post("/v1/internal/chats", json=body, headers=INTERNAL_HEADERS)
    assert response.json() == {"stored": True}, response.text


async def test_pages_newest_first_with_a_cursor(records_auth: RecordsAuth) -> None:
    sub, headers = await records_auth.user(consent=True)
    now = int(time.time())
    ids = [f"chatcmpl-p{i}" for i in range(5)]
    for i, answer_id in enumerate(ids):
        await _store(records_auth, chat(sub, answer_id, created_at=now - 100 + i))
    newest_first = ids[::-1]
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (
            await records_auth.client.get("/v1/me/chats", params=params, headers=headers)
        ).json()
        seen += [entry["id"] for entry in page["data"]]
        assert page["object"] == "list"
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == newest_first
    first = (await records_auth.client.get("/v1/me/chats", headers=headers)).json()
    entry = first["data"][0]
    assert entry["expires_at"] == entry["created_at"] + 7 * 86400
    assert entry["messages"] == [{"role": "user", "content": "hello"}]
    assert first["first_id"] == newest_first[0]


async def test_export_is_one_attachment(records_auth: RecordsAuth) -> None:
    sub, headers = await records_auth.user(consent=True)
    await _store(records_auth, chat(sub, "chatcmpl-e1"))
    response = await records_auth.client.get("/v1/me/chats/export", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment")
    body = response.json()
    assert body["object"] == "chat.export"
    assert (body["subject"], body["store_chats"], body["retention_days"]) == (sub, True, 7)
    assert [c["id"] for c in body["chats"]] == ["chatcmpl-e1"]


async def test_erase_per_conversation_and_all(records_auth: RecordsAuth) -> None:
    sub, headers = await records_auth.user(consent=True)
    await _store(records_auth, chat(sub, "chatcmpl-a1", conversation_id="conv-a"))
    await _store(records_auth, chat(sub, "chatcmpl-a2", conversation_id="conv-a"))
    await _store(records_auth, chat(sub, "chatcmpl-b1", conversation_id="conv-b"))
    client = records_auth.client
    gone = await client.delete("/v1/me/chats/conv-a", headers=headers)
    assert gone.json() == {"deleted": 2, "object": "chat.deleted"}
    assert_envelope(
        await client.delete("/v1/me/chats/conv-a", headers=headers), 404, "conversation_not_found"
    )
    rest = (await client.get("/v1/me/chats", headers=headers)).json()["data"]
    assert [entry["id"] for entry in rest] == ["chatcmpl-b1"]
    assert (await client.delete("/v1/me/chats", headers=headers)).json()["deleted"] == 1
    assert (await client.get("/v1/me/chats", headers=headers)).json()["data"] == []


async def test_users_see_nothing_of_each_other(records_auth: RecordsAuth) -> None:
    alice, alice_headers = await records_auth.user(consent=True)
    _, bob_headers = await records_auth.user(consent=True)
    await _store(records_auth, chat(alice, "chatcmpl-alice", conversation_id="conv-alice"))
    client = records_auth.client
    assert (await client.get("/v1/me/chats", headers=bob_headers)).json()["data"] == []
    export = (await client.get("/v1/me/chats/export", headers=bob_headers)).json()
    assert export["chats"] == []
    assert_envelope(await client.delete("/v1/me/chats/conv-alice", headers=bob_headers), 404)
    assert (await client.delete("/v1/me/chats", headers=bob_headers)).json()["deleted"] == 0
    cursor = await client.get(
        "/v1/me/chats", params={"after": "chatcmpl-alice"}, headers=bob_headers
    )
    assert_envelope(cursor, 400, "invalid_cursor")
    mine = (await client.get("/v1/me/chats", headers=alice_headers)).json()["data"]
    assert [entry["id"] for entry in mine] == ["chatcmpl-alice"]


async def test_401_without_a_session_token(records_auth: RecordsAuth) -> None:
    client = records_auth.client
    key = await client.post(
        "/v1/admin/keys",
        json={"owner": "bot", "tier": "agent"},
        headers={"authorization": f"Bearer {records_auth.settings.admin_token}"},
    )
    api_key = {"authorization": f"Bearer {key.json()['key']}"}
    for headers in ({}, api_key, {"authorization": "Basic x"}):
        for method, path in (
            ("GET", "/v1/me/chats"),
            ("GET", "/v1/me/chats/export"),
            ("DELETE", "/v1/me/chats"),
            ("DELETE", "/v1/me/chats/conv"),
        ):
            assert_envelope(await client.request(method, path, headers=headers), 401)


async def test_bad_query_params_are_400(records_auth: RecordsAuth) -> None:
    _, headers = await records_auth.user(consent=True)
    for params in ({"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"limit": "-1"},
                   {"after": "y" * 200}, {"after": "chatcmpl-none"}):  # fmt: skip
        response = await records_auth.client.get("/v1/me/chats", params=params, headers=headers)
        assert_envelope(response, 400)


async def test_withdrawal_erases_everything_stored(records_auth: RecordsAuth) -> None:
    sub, headers = await records_auth.user(consent=True)
    await _store(records_auth, chat(sub))
    await _store(records_auth, chat(sub))
    withdrawn = await records_auth.client.put(
        "/v1/auth/consent", json={"store_chats": False}, headers=headers
    )
    assert withdrawn.status_code == 200
    assert withdrawn.json()["store_chats"] is False
    assert await records_auth.app.state.records.count_chats() == 0
    headers = {"authorization": f"Bearer {withdrawn.json()['access_token']}"}
    export = (await records_auth.client.get("/v1/me/chats/export", headers=headers)).json()
    assert (export["store_chats"], export["chats"]) == (False, [])


async def test_purge_removes_only_what_is_older_than_the_retention(
    records_auth: RecordsAuth,
) -> None:
    sub, headers = await records_auth.user(consent=True)
    now = int(time.time())
    await _store(records_auth, chat(sub, "chatcmpl-old", created_at=now - 7 * 86400 - 60))
    await _store(records_auth, chat(sub, "chatcmpl-young", created_at=now - 7 * 86400 + 60))
    purger = records_auth.app.state.purger
    assert await purger.run_once() == 1
    left = (await records_auth.client.get("/v1/me/chats", headers=headers)).json()["data"]
    assert [entry["id"] for entry in left] == ["chatcmpl-young"]
    metrics = await records_auth.client.get("/metrics")
    assert "tiergate_auth_chats_purged_total 1.0" in metrics.text
    assert await purger.run_once() == 0  # a second replica's pass: harmless


async def test_records_off_without_a_database(auth: Auth) -> None:
    client = auth.client
    tokens = await auth.sign_in(new_email())
    headers = {"authorization": f"Bearer {tokens['access_token']}"}
    assert_envelope(await client.get("/v1/me/chats", headers=headers), 404, "records_disabled")
    assert_envelope(
        await client.post("/v1/internal/chats", json=chat("x"), headers=INTERNAL_HEADERS),
        404,
        "records_disabled",
    )
