"""A private PostgreSQL (the testkit's fallback) stopped mid-run: 503s, and a withdrawal of
consent made while it was down is finished by the purge once it is back."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tiergate_auth.app import create_app
from tiergate_auth.settings import DatabaseSettings
from tiergate_auth.sink import MailSink
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.ports import free_port
from tiergate_testkit.postgres import PostgresServer
from tiergate_testkit.redis_server import RedisServer

from .conftest import INTERNAL_HEADERS, RecordsAuth, auth_settings, chat
from .test_auth_app import assert_envelope


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PostgresServer]:
    """What `connect()` falls back to when the configured server does not answer."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIERGATE_TEST_POSTGRES", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
        server = PostgresServer.connect()
    yield server
    server.stop()


def test_the_fallback_is_a_private_server(private_postgres: PostgresServer) -> None:
    assert private_postgres.answers()
    name = private_postgres.create_database()
    assert private_postgres.psql("SELECT current_database()", name).strip() == name
    private_postgres.drop_database(name)
    assert name not in private_postgres.psql("SELECT datname FROM pg_database")


async def test_server_stopped_mid_run(
    private_postgres: PostgresServer, redis_server: RedisServer, mail_sink: MailSink
) -> None:
    name = private_postgres.create_database()
    settings = auth_settings(
        redis_server.url,
        mail_sink.port,
        database=DatabaseSettings(
            url=private_postgres.url(name), upgrade_on_start=True, connect_timeout_s=1
        ),
    )
    app = create_app(settings)
    async with (
        serve_in_loop(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        auth = RecordsAuth(url=url, client=client, sink=mail_sink, settings=settings, app=app)
        sub, headers = await auth.user(consent=True)
        stored = await client.post("/v1/internal/chats", json=chat(sub), headers=INTERNAL_HEADERS)
        assert stored.json() == {"stored": True}
        private_postgres.pause()
        try:
            listing = await client.get("/v1/me/chats", headers=headers)
            assert_envelope(listing, 503, "records_unavailable")
            assert listing.headers["retry-after"] == "2"
            withdraw = await client.put(
                "/v1/auth/consent", json={"store_chats": False}, headers=headers
            )
            assert_envelope(withdraw, 503, "records_unavailable")
            assert "Traceback" not in withdraw.text
        finally:
            private_postgres.resume()
        # Nothing more is stored, and the purge finishes the erasure the user asked for.
        again = await client.post("/v1/internal/chats", json=chat(sub), headers=INTERNAL_HEADERS)
        assert again.json() == {"stored": False}
        assert await app.state.records.count_chats() == 1
        await app.state.purger.run_once()
        assert await app.state.records.count_chats() == 0
        assert await app.state.service.users.pending_erasures() == {}
    private_postgres.drop_database(name)
