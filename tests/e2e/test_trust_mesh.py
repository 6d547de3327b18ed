"""End to end: feedback on answers and consented chat history, across real processes.

The auth service (its records on a real PostgreSQL database, and on SQLite), a gateway and a
fake engine (standing in for a model: it answers what the test tells it to) run as processes
on ephemeral ports; mail goes to a real SMTP sink; clients are the official `openai` SDK and
plain HTTP. Both services log at debug level, unbuffered: the last test reads every line they
wrote and finds none of the prompts or answers (issue 15).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tiergate_auth.sink import MailSink
from tiergate_testkit.ports import free_port
from tiergate_testkit.postgres import PostgresServer
from tiergate_testkit.services import ServiceProcess
from tiergate_testkit.waiting import wait_until

pytestmark = pytest.mark.e2e

ALIAS = "tiergate-small"
ENGINE_MODEL = "fake-model"
PEPPER = "trust-pepper-0123456789abcdefghijklmnop"
ADMIN = "trust-admin-0123456789abcdefghijklmnopq"
INTERNAL = "trust-internal-0123456789abcdefghijklm"
CONVERSATION = "x-tiergate-conversation"


@dataclass
class Mesh:
    auth: ServiceProcess
    gateway: ServiceProcess
    sink: MailSink
    secrets: list[str] = field(default_factory=list)
    """Every prompt and answer text the tests sent or got: none may reach a log."""
    clients: ExitStack = field(default_factory=ExitStack)

    def secret(self, what: str) -> str:
        """A unique text to put in a prompt or an answer (remembered for the log check)."""
        text = f"{what} {uuid.uuid4().hex[:12]} quokka"
        self.secrets.append(text)
        return text

    def sdk(self, key: str = "anonymous", visitor: str = "10.7.0.1") -> openai.OpenAI:
        return self.clients.enter_context(
            openai.OpenAI(
                base_url=f"{self.gateway.base_url}/v1",
                api_key=key,
                max_retries=0,
                timeout=30,
                default_headers={"x-forwarded-for": visitor},
            )
        )

    def http(self, visitor: str = "10.7.0.1", token: str | None = None) -> httpx.Client:
        headers = {"x-forwarded-for": visitor}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return self.clients.enter_context(
            httpx.Client(base_url=self.gateway.base_url, headers=headers, timeout=30)
        )

    def sign_in(self, *, consent: bool) -> str:
        """A user's access token (carrying `store_chats` = `consent`)."""
        email = f"trust-{uuid.uuid4().hex[:8]}@example.org"
        with httpx.Client(base_url=self.gateway.base_url, timeout=30) as http:
            assert http.post("/v1/auth/otp/start", json={"email": email}).status_code == 202
            code = self.sink.wait_for(email, 1, 10).code
            tokens = http.post("/v1/auth/otp/verify", json={"email": email, "code": code}).json()
            token: str = tokens["access_token"]
            if consent:
                answer = http.put(
                    "/v1/auth/consent",
                    json={"store_chats": True},
                    headers={"authorization": f"Bearer {token}"},
                )
                assert answer.status_code == 200, answer.text
                token = answer.json()["access_token"]
        return token

    def chat_writes(self) -> dict[str, float]:
        """The gateway's `records_writes_total{kind="chat"}` by outcome."""
        text = httpx.get(f"{self.gateway.base_url}/metrics", timeout=10).text
        found = re.findall(
            r'^tiergate_gateway_records_writes_total\{kind="chat",outcome="(\w+)"\} (\S+)$',
            text,
            re.MULTILINE,
        )
        return {outcome: float(value) for outcome, value in found}


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def mesh(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    database: str | None = None
    postgres: PostgresServer | None = None
    if request.param == "postgres":
        postgres = PostgresServer.connect()
        database = postgres.create_database()
        url = postgres.url(database)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('records')}/auth.db"
    sink = MailSink().start()
    engine_port = free_port()
    engine = subprocess.Popen(
        [sys.executable, "-m", "tiergate_testkit.fake_engine", "--port", str(engine_port),
         "--model", ENGINE_MODEL],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_until(lambda: _listening(engine_port), 15)
        unbuffered = {"PYTHONUNBUFFERED": "1"}
        auth_env = {
            **unbuffered,
            "TIERGATE_AUTH_SERVER__LOG_LEVEL": "debug",
            "TIERGATE_AUTH_PEPPER": PEPPER,
            "TIERGATE_AUTH_ADMIN_TOKEN": ADMIN,
            "TIERGATE_AUTH_INTERNAL_TOKEN": INTERNAL,
            "TIERGATE_AUTH_SMTP__PORT": str(sink.port),
            "TIERGATE_AUTH_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            "TIERGATE_AUTH_DATABASE__URL": url,
            "TIERGATE_AUTH_DATABASE__UPGRADE_ON_START": "true",
        }
        with ServiceProcess("tiergate_auth", "TIERGATE_AUTH_", auth_env) as auth:
            gateway_env = {
                **unbuffered,
                "TIERGATE_GATEWAY_SERVER__LOG_LEVEL": "debug",
                "TIERGATE_GATEWAY_AUTH__URL": auth.base_url,
                "TIERGATE_GATEWAY_AUTH__PEPPER": PEPPER,
                "TIERGATE_GATEWAY_AUTH__INTERNAL_TOKEN": INTERNAL,
                "TIERGATE_GATEWAY_TRUSTED_PROXIES": '["127.0.0.1/32"]',
                "TIERGATE_GATEWAY_BACKENDS": json.dumps(
                    {"cpu": {"base_url": f"http://127.0.0.1:{engine_port}/v1", "kind": "vllm"}}
                ),
                "TIERGATE_GATEWAY_MODELS": json.dumps(
                    [{"id": ALIAS, "backend": "cpu", "engine_model": ENGINE_MODEL}]
                ),
                "TIERGATE_GATEWAY_TIERS": json.dumps(
                    {
                        "anonymous": {"models": [ALIAS], "max_tokens": 300},
                        "user": {"models": ["*"], "max_tokens": 1024},
                    }
                ),
            }
            with ServiceProcess("tiergate_gateway", "TIERGATE_GATEWAY_", gateway_env) as gateway:
                mesh = Mesh(auth=auth, gateway=gateway, sink=sink)
                with mesh.clients:
                    yield mesh
    finally:
        engine.terminate()
        engine.wait(10)
        sink.stop()
        if postgres is not None and database is not None:
            postgres.drop_database(database)


def ask(
    mesh: Mesh,
    client: openai.OpenAI,
    *,
    stream: bool,
    conversation: str | None = None,
) -> tuple[str, str, str]:
    """One chat: (answer id, prompt, answer text as the client got it)."""
    prompt = mesh.secret("prompt")
    answer = mesh.secret("answer")
    headers = {CONVERSATION: conversation} if conversation else {}
    messages: Any = [{"role": "user", "content": prompt}]
    body = {"fake": {"content": answer}}
    if not stream:
        completion = client.chat.completions.create(
            model=ALIAS, messages=messages, extra_body=body, extra_headers=headers
        )
        return completion.id, prompt, completion.choices[0].message.content or ""
    parts: list[str] = []
    answer_id = ""
    for chunk in client.chat.completions.create(
        model=ALIAS, messages=messages, extra_body=body, extra_headers=headers, stream=True
    ):
        answer_id = chunk.id
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return answer_id, prompt, "".join(parts)


def admin_feedback(mesh: Mesh, **params: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{mesh.auth.base_url}/v1/admin/feedback",
        params=params,
        headers={"authorization": f"Bearer {ADMIN}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def test_feedback_is_taken_from_whoever_got_the_answer_only(mesh: Mesh) -> None:
    ada, eve = mesh.sdk(visitor="10.7.1.1"), mesh.http(visitor="10.7.1.2")
    answer_id, _, _ = ask(mesh, ada, stream=True)
    http = mesh.http(visitor="10.7.1.1")
    # At once after the stream ended: the id is known.
    first = http.post("/v1/feedback", json={"id": answer_id, "rating": "up"})
    assert first.status_code == 200, first.text
    assert first.json()["replaced"] is False
    comment = mesh.secret("comment")
    second = http.post(
        "/v1/feedback",
        json={"id": answer_id, "rating": "down", "flag": "wrong", "comment": comment},
    )
    assert second.status_code == 200
    assert second.json()["replaced"] is True
    assert second.json()["flag"] == "wrong"
    # Someone else, an unknown id: 404, the same answer either way.
    for client, rated in ((eve, answer_id), (http, "chatcmpl-does-not-exist")):
        refused = client.post("/v1/feedback", json={"id": rated, "rating": "up"})
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "answer_not_found"
    # Neither a rating nor a flag; a comment over the limit; a flag we do not know: 400.
    for body in (
        {"id": answer_id},
        {"id": answer_id, "rating": "up", "comment": "x" * 2001},
        {"id": answer_id, "flag": "boring"},
    ):
        bad = http.post("/v1/feedback", json=body)
        assert bad.status_code == 400, (body, bad.text)
        assert bad.json()["error"]["type"] == "invalid_request_error"
    items = [i for i in admin_feedback(mesh, model=ALIAS) if i["answer_id"] == answer_id]
    assert len(items) == 1  # replaced, not added
    assert items[0]["rating"] == "down"
    assert items[0]["flag"] == "wrong"
    assert items[0]["comment"] == comment
    assert items[0]["tier"] == "anonymous"
    assert set(items[0]) >= {"model", "backend", "answered_at", "created_at"}
    assert "10.7.1.1" not in json.dumps(items[0])  # the address is only a keyed digest


def test_a_consenting_users_exchanges_are_kept_and_can_be_read_exported_and_erased(
    mesh: Mesh,
) -> None:
    token = mesh.sign_in(consent=True)
    client = mesh.sdk(token)
    streamed = ask(mesh, client, stream=True, conversation="conv-a")
    whole = ask(mesh, client, stream=False, conversation="conv-a")
    other = ask(mesh, client, stream=False)
    me = mesh.http(token=token)

    def listed() -> list[dict[str, Any]]:
        answer = me.get("/v1/me/chats")
        assert answer.status_code == 200, answer.text
        data: list[dict[str, Any]] = answer.json()["data"]
        return data

    assert wait_until(lambda: len(listed()) == 3, 15)
    by_id = {entry["id"]: entry for entry in listed()}
    for answer_id, prompt, text in (streamed, whole, other):
        entry = by_id[answer_id]
        assert entry["messages"] == [{"role": "user", "content": prompt}]
        assert entry["answer"]["content"] == text  # a stream assembled, as the client got it
        assert entry["finish_reason"] == "stop"
        assert entry["expires_at"] - entry["created_at"] == 7 * 86400
    assert by_id[streamed[0]]["conversation_id"] == "conv-a"
    assert by_id[other[0]]["conversation_id"] == other[0]  # no header: its own conversation
    # Paginated, newest first.
    page = me.get("/v1/me/chats", params={"limit": 2}).json()
    assert page["has_more"] is True
    assert [e["id"] for e in page["data"]] == [other[0], whole[0]]
    rest = me.get("/v1/me/chats", params={"limit": 2, "after": page["last_id"]}).json()
    assert [e["id"] for e in rest["data"]] == [streamed[0]]
    assert rest["has_more"] is False
    # Export: one JSON document with everything.
    export = me.get("/v1/me/chats/export")
    assert export.status_code == 200
    assert {c["id"] for c in export.json()["chats"]} == set(by_id)
    # Erase one conversation, then withdraw consent: everything goes.
    erased = me.delete("/v1/me/chats/conv-a")
    assert erased.status_code == 200
    assert erased.json()["deleted"] == 2
    assert [e["id"] for e in listed()] == [other[0]]
    withdrawn = me.put("/v1/auth/consent", json={"store_chats": False})
    assert withdrawn.status_code == 200
    assert listed() == []
    # The old token still says store_chats: the auth service's own record of the consent wins.
    declined_before = mesh.chat_writes().get("declined", 0.0)
    ask(mesh, client, stream=False)
    assert wait_until(lambda: mesh.chat_writes().get("declined", 0.0) == declined_before + 1, 15)
    assert listed() == []


def test_anonymous_and_unconsenting_users_are_never_stored(mesh: Mesh) -> None:
    writes_before = sum(mesh.chat_writes().values())
    token = mesh.sign_in(consent=False)
    ask(mesh, mesh.sdk(token), stream=True)
    ask(mesh, mesh.sdk(token), stream=False)
    ask(mesh, mesh.sdk(visitor="10.7.2.1"), stream=True)
    # A consenting user's exchange after them, waited for: had the others been sent, they
    # would have been sent before it.
    consenting = mesh.sign_in(consent=True)
    ask(mesh, mesh.sdk(consenting), stream=False)
    assert wait_until(lambda: sum(mesh.chat_writes().values()) >= writes_before + 1, 15)
    assert sum(mesh.chat_writes().values()) == writes_before + 1
    nothing = mesh.http(token=token).get("/v1/me/chats")
    assert nothing.status_code == 200
    assert nothing.json()["data"] == []
    anonymous = mesh.http(visitor="10.7.2.1").get("/v1/me/chats")
    assert anonymous.status_code == 401


def test_no_prompt_or_answer_reaches_a_log(mesh: Mesh) -> None:
    """Every prompt, answer and comment this mesh saw, in no log line: those of the tests
    above that ran on this process's mesh (under `make test-fast`'s workers, maybe none)
    and this test's own exchanges, which take every path that handles chat text."""
    consenting = mesh.sign_in(consent=True)
    client, me = mesh.sdk(consenting), mesh.http(token=consenting)
    written = mesh.chat_writes().get("stored", 0.0)
    answer_id, _, _ = ask(mesh, client, stream=True, conversation="conv-log")
    ask(mesh, client, stream=False, conversation="conv-log")
    assert wait_until(lambda: mesh.chat_writes().get("stored", 0.0) >= written + 2, 15)
    assert len(me.get("/v1/me/chats").json()["data"]) == 2
    assert me.get("/v1/me/chats/export").status_code == 200
    rated = me.post(
        "/v1/feedback", json={"id": answer_id, "rating": "down", "comment": mesh.secret("comment")}
    )
    assert rated.status_code == 200, rated.text
    assert me.put("/v1/auth/consent", json={"store_chats": False}).status_code == 200
    ask(mesh, mesh.sdk(mesh.sign_in(consent=False)), stream=True)
    ask(mesh, mesh.sdk(visitor="10.7.3.1"), stream=False)
    assert len(mesh.secrets) >= 9
    logs = {
        "auth": Path(mesh.auth.log_path).read_text(errors="replace"),
        "gateway": Path(mesh.gateway.log_path).read_text(errors="replace"),
    }
    for service, log in logs.items():  # they did log, at debug level too
        assert log.count("\n") > 10, service
        assert '"level": "debug"' in log, service
    for service, log in logs.items():
        for secret in mesh.secrets:
            marker = secret.split()[1]  # the unique part
            assert marker not in log, f"{service} logged a prompt or answer"
