"""`create_app(settings)`: the auth service's wiring: store, service, routes, errors, lifespan.

Public (`/v1/auth/*`, usually reached through the gateway): one-time codes, refresh, logout,
me, consent, and the JWKS. Admin (`/v1/admin/keys`, admin token): API keys. Internal
(`/v1/internal/*`, internal token): what gateways ask when they share no Redis with us.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import RedisError

from tiergate_auth.mailer import Mailer, SmtpMailer
from tiergate_auth.records.db import DATABASE_ERRORS, Database, RecordsUnavailable
from tiergate_auth.records.purge import Purger
from tiergate_auth.records.repository import Records
from tiergate_auth.records.routes import records_routes
from tiergate_auth.routes import Context, admin_routes, internal_routes, public_routes
from tiergate_auth.service import AuthService
from tiergate_auth.settings import AuthSettings, validate
from tiergate_runtime.app import service_app
from tiergate_runtime.clientip import TrustedProxies
from tiergate_runtime.errors import ServiceUnavailable, error_response
from tiergate_runtime.metrics import HttpMetrics
from tiergate_state.store import connect

__all__ = ["create_app"]


def _store_unavailable(_: Request[Any, Any, Any], exc: RedisError) -> Response[bytes]:
    error = ServiceUnavailable(
        "The session store is unreachable; try again shortly.", retry_after=2
    )
    return error_response(error.status, error.envelope(), error.response_headers())


def _records_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    error = RecordsUnavailable()
    return error_response(error.status, error.envelope(), error.response_headers())


def create_app(settings: AuthSettings, *, mailer: Mailer | None = None) -> Litestar:
    """Build the auth app from validated settings (`mailer` replaces SMTP, for tests)."""
    validate(settings)
    store = connect(settings.store)
    database = Database(settings.database) if settings.database.url is not None else None
    records = Records(database) if database is not None else None
    service = AuthService(settings, store, mailer or SmtpMailer(settings.smtp), records)
    registry = CollectorRegistry()
    ctx = Context(
        settings=settings,
        service=service,
        proxies=TrustedProxies(settings.trusted_proxies),
        sign_ins=Counter(
            "tiergate_auth_sign_ins", "Completed sign-ins by e-mail code.", registry=registry
        ),
        refresh_reuse=Counter(
            "tiergate_auth_refresh_reuse",
            "Refresh tokens presented again after use (the session was revoked).",
            registry=registry,
        ),
        records=records,
    )
    purged = Counter(
        "tiergate_auth_chats_purged",
        "Consented chat records removed by the retention purge.",
        registry=registry,
    )
    purger = (
        Purger(records, settings.database.purge_interval_s, purged, service.users)
        if records is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        purge: asyncio.Task[None] | None = None
        if database is not None and purger is not None:
            await database.check()  # SchemaMismatch: refuse to start
            purge = asyncio.create_task(purger.loop())
        try:
            yield
        finally:
            if purge is not None:
                purge.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purge
            await service.otp.drain()
            await store.aclose()
            if database is not None:
                await database.aclose()

    app = service_app(
        [*public_routes(ctx), *admin_routes(ctx), *internal_routes(ctx), *records_routes(ctx)],
        registry=registry,
        http_metrics=HttpMetrics(registry, "tiergate_auth"),
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
        browser=settings.browser,
        extra_handlers={
            RedisError: _store_unavailable,
            **{kind: _records_unavailable for kind in DATABASE_ERRORS if kind is not OSError},
        },
    )
    app.state.service = service
    app.state.records = records
    app.state.purger = purger
    return app
