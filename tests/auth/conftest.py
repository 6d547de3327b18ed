"""Auth service tests: the real app on a real socket, a real redis-server, a real SMTP sink."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tiergate_auth.app import create_app
from tiergate_auth.settings import AuthSettings, DatabaseSettings, SmtpSettings
from tiergate_auth.sink import MailSink
from tiergate_state.store import StoreSettings
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.postgres import PostgresServer
from tiergate_testkit.redis_server import RedisServer

PEPPER = "pepper-for-tests-only-0123456789abcdef"
ADMIN = "admin-token-for-tests-0123456789abcdef"
INTERNAL = "internal-token-for-tests-0123456789abcd"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink().start()
    yield sink
    sink.stop()


def auth_settings(redis_url: str | None, sink_port: int, **overrides: Any) -> AuthSettings:
    settings = AuthSettings(
        store=StoreSettings(url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:8]}"),
        pepper=PEPPER,
        admin_token=ADMIN,
        internal_token=INTERNAL,
        smtp=SmtpSettings(host="127.0.0.1", port=sink_port),
    )
    return msgspec.structs.replace(settings, **overrides)


@dataclass
class Auth:
    url: str
    client: httpx.AsyncClient
    sink: MailSink
    settings: AuthSettings

    async def sign_in(self, email: str) -> dict[str, Any]:
        """Request a code, read it from the SMTP sink, verify it: the token response."""
        before = len([m for m in self.sink.messages if email in m.to])
        response = await self.client.post("/v1/auth/otp/start", json={"email": email})
        assert response.status_code == 202, response.text
        mail = await wait_mail(self.sink, email, before + 1)
        response = await self.client.post(
            "/v1/auth/otp/verify", json={"email": email, "code": mail.code}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def wait_mail(sink: MailSink, to: str, count: int) -> Any:
    import asyncio

    return await asyncio.to_thread(sink.wait_for, to, count, 10.0)


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.org"


@pytest.fixture
async def auth(redis_server: RedisServer, mail_sink: MailSink) -> AsyncIterator[Auth]:
    settings = auth_settings(redis_server.url, mail_sink.port)
    async with (
        serve_in_loop(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield Auth(url=url, client=client, sink=mail_sink, settings=settings)


# -- records (issue 15): real PostgreSQL and SQLite ---------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer.connect()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(
    request: pytest.FixtureRequest, postgres: PostgresServer, tmp_path: Path
) -> Iterator[str]:
    """An empty database on each backend: a SQLite file, a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/records/auth.db"
        return
    name = postgres.create_database()
    yield postgres.url(name)
    postgres.drop_database(name)


@dataclass
class RecordsAuth(Auth):
    app: Any = None

    async def user(self, consent: bool) -> tuple[str, dict[str, str]]:
        """A signed-in user (consenting or not): their sub and auth headers."""
        tokens = await self.sign_in(new_email())
        headers = {"authorization": f"Bearer {tokens['access_token']}"}
        if consent:
            response = await self.client.put(
                "/v1/auth/consent", json={"store_chats": True}, headers=headers
            )
            assert response.status_code == 200, response.text
            headers = {"authorization": f"Bearer {response.json()['access_token']}"}
        me = await self.client.get("/v1/auth/me", headers=headers)
        return str(me.json()["sub"]), headers


INTERNAL_HEADERS = {"authorization": f"Bearer {INTERNAL}"}
ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN}"}


def chat(subject: str, answer_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A ChatRecord body."""
    answer_id = answer_id or f"chatcmpl-{uuid.uuid4().hex[:12]}"
    body: dict[str, Any] = {
        "answer_id": answer_id,
        "subject": subject,
        "conversation_id": answer_id,
        "tier": "user",
        "model": "small",
        "backend": "cpu",
        "api": "chat",
        "created_at": int(time.time()),
        "messages": [{"role": "user", "content": "hello"}],
        "answer": {"role": "assistant", "content": "hi"},
        "finish_reason": "stop",
    }
    body.update(overrides)
    return body


def feedback(answer_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A FeedbackRecord body."""
    body: dict[str, Any] = {
        "answer_id": answer_id or f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "subject_digest": "d" * 64,
        "tier": "user",
        "model": "small",
        "backend": "cpu",
        "api": "chat",
        "answered_at": int(time.time()),
        "rating": "up",
    }
    body.update(overrides)
    return body


@pytest.fixture
async def records_auth(
    db_url: str, redis_server: RedisServer, mail_sink: MailSink
) -> AsyncIterator[RecordsAuth]:
    settings = auth_settings(
        redis_server.url,
        mail_sink.port,
        database=DatabaseSettings(url=db_url, upgrade_on_start=True, purge_interval_s=3600),
    )
    app = create_app(settings)
    async with (
        serve_in_loop(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield RecordsAuth(url=url, client=client, sink=mail_sink, settings=settings, app=app)
