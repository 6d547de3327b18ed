"""The internal records API on both backends: consented chats, feedback upsert, hostile bodies."""

from __future__ import annotations

from tiergate_proto.records import MAX_COMMENT_CHARS

from .conftest import INTERNAL_HEADERS, RecordsAuth, chat, feedback
from .test_auth_app import assert_envelope


async def _my_chats(auth: RecordsAuth, headers: dict[str, str]) -> list[str]:
    response = await auth.client.get("/v1/me/chats", headers=headers)
    assert response.status_code == 200, response.text
    return [entry["id"] for entry in response.json()["data"]]


async def test_a_consenting_users_chat_is_stored_once(records_auth: RecordsAuth) -> None:
    sub, headers = await records_auth.user(consent=True)
    body = chat(sub)
    for _ in range(2):  # idempotent on the answer id
        response = await records_auth.client.post(
            "/v1/internal/chats", json=body, headers=INTERNAL_HEADERS
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"stored": True}
    assert await _my_chats(records_auth, headers) == [body["answer_id"]]
    assert await records_auth.app.state.records.count_chats() == 1


async def test_no_consent_or_unknown_subject_is_not_stored(records_auth: RecordsAuth) -> None:
    sub, headers = await records_auth.user(consent=False)
    for subject in (sub, "no-such-user"):
        response = await records_auth.client.post(
            "/v1/internal/chats", json=chat(subject), headers=INTERNAL_HEADERS
        )
        assert response.status_code == 200
        assert response.json() == {"stored": False}
    assert await _my_chats(records_auth, headers) == []
    assert await records_auth.app.state.records.count_chats() == 0


async def test_withdrawn_consent_stops_storing(records_auth: RecordsAuth) -> None:
    sub, headers = await records_auth.user(consent=True)
    withdrawn = await records_auth.client.put(
        "/v1/auth/consent", json={"store_chats": False}, headers=headers
    )
    assert withdrawn.status_code == 200
    # The gateway may still hold a token saying store_chats: the record is refused anyway.
    response = await records_auth.client.post(
        "/v1/internal/chats", json=chat(sub), headers=INTERNAL_HEADERS
    )
    assert response.json() == {"stored": False}


async def test_feedback_upsert_replaces(records_auth: RecordsAuth) -> None:
    body = feedback(rating="up")
    first = await records_auth.client.put(
        "/v1/internal/feedback", json=body, headers=INTERNAL_HEADERS
    )
    assert first.status_code == 200, first.text
    assert first.json()["replaced"] is False
    assert isinstance(first.json()["created_at"], int)
    second = await records_auth.client.put(
        "/v1/internal/feedback",
        json={**body, "rating": "down", "flag": "wrong", "comment": "no"},
        headers=INTERNAL_HEADERS,
    )
    assert second.status_code == 200
    assert second.json()["replaced"] is True
    page = await records_auth.client.get(
        "/v1/admin/feedback",
        headers={"authorization": f"Bearer {records_auth.settings.admin_token}"},
    )
    items = [i for i in page.json()["data"] if i["answer_id"] == body["answer_id"]]
    assert len(items) == 1
    assert (items[0]["rating"], items[0]["flag"], items[0]["comment"]) == ("down", "wrong", "no")


async def test_comment_too_long_is_400(records_auth: RecordsAuth) -> None:
    response = await records_auth.client.put(
        "/v1/internal/feedback",
        json=feedback(comment="x" * (MAX_COMMENT_CHARS + 1)),
        headers=INTERNAL_HEADERS,
    )
    assert_envelope(response, 400)
    ok = await records_auth.client.put(
        "/v1/internal/feedback",
        json=feedback(comment="x" * MAX_COMMENT_CHARS),
        headers=INTERNAL_HEADERS,
    )
    assert ok.status_code == 200


async def test_hostile_internal_bodies(records_auth: RecordsAuth) -> None:
    client = records_auth.client
    for path, method in (("/v1/internal/chats", "POST"), ("/v1/internal/feedback", "PUT")):
        json_headers = {**INTERNAL_HEADERS, "content-type": "application/json"}
        bad = await client.request(method, path, content=b"{not json", headers=json_headers)
        assert_envelope(bad, 400, "invalid_json")
        wrong = await client.request(method, path, json={"answer_id": 5}, headers=INTERNAL_HEADERS)
        assert_envelope(wrong, 400)
        missing = await client.request(method, path, json={}, headers=INTERNAL_HEADERS)
        assert_envelope(missing, 400, "missing_required_parameter")
        nobody = await client.request(method, path, json={})
        assert_envelope(nobody, 401)
    big = chat("x", messages=[{"role": "user", "content": "y" * (2 * 1024 * 1024)}])
    assert_envelope(
        await client.post("/v1/internal/chats", json=big, headers=INTERNAL_HEADERS), 413
    )
    big_feedback = feedback(comment="z" * 20000)
    assert_envelope(
        await client.put("/v1/internal/feedback", json=big_feedback, headers=INTERNAL_HEADERS),
        413,
    )
    # A chat larger than max_body_bytes (16 KiB) but within max_chat_bytes is accepted.
    sub, _ = await records_auth.user(consent=True)
    large = chat(sub, messages=[{"role": "user", "content": "w" * 100_000}])
    response = await client.post("/v1/internal/chats", json=large, headers=INTERNAL_HEADERS)
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": True}
