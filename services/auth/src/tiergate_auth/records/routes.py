"""The records routes: internal writes (gateways), the user's `/v1/me/chats`, admin feedback.

Internal (internal token): `POST /v1/internal/chats`, `PUT /v1/internal/feedback`. Public
(session access token, as `/v1/auth/me`; relayed by the gateway): `GET /v1/me/chats`,
`GET /v1/me/chats/export`, `DELETE /v1/me/chats[/{conversation_id}]`. Admin (admin token):
`GET /v1/admin/feedback[/export]`. With no `[database] url` each answers 404
`records_disabled`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any, get_args

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response import Stream

from tiergate_auth.records.repository import FeedbackFilter, Records
from tiergate_auth.routes import Context, json_response, require_token
from tiergate_proto.records import (
    ChatExport,
    ChatPage,
    ChatRecord,
    ChatsErased,
    ChatStored,
    FeedbackFlag,
    FeedbackPage,
    FeedbackRating,
    FeedbackRecord,
)
from tiergate_runtime.body import read_struct
from tiergate_runtime.errors import InvalidRequest, NotFound

__all__ = ["records_routes"]

_encode = msgspec.json.Encoder().encode
_FLAGS = set(get_args(FeedbackFlag))
_RATINGS = set(get_args(FeedbackRating))
_MAX_TIME = 2**62


def _records(ctx: Context) -> Records:
    if ctx.records is None:
        raise NotFound(
            "Stored records are off on this server (no [database] url).",
            code="records_disabled",
        )
    return ctx.records


def _int(request: Request[Any, Any, Any], name: str, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(
            f"Invalid '{name}': expected an integer from {low} to {high}.",
            param=name,
            code="invalid_value",
        )
    return int(raw)


def _choice(request: Request[Any, Any, Any], name: str, allowed: set[str]) -> str | None:
    raw = request.query_params.get(name)
    if raw is not None and raw not in allowed:
        raise InvalidRequest(
            f"Invalid '{name}': expected one of {', '.join(sorted(allowed))}.",
            param=name,
            code="invalid_value",
        )
    return raw


def _limit(request: Request[Any, Any, Any]) -> int:
    value = _int(request, "limit", 1, 100)
    return 20 if value is None else value


def _feedback_filter(request: Request[Any, Any, Any]) -> FeedbackFilter:
    model = request.query_params.get("model")
    if model is not None and not 1 <= len(model) <= 200:
        raise InvalidRequest("Invalid 'model'.", param="model", code="invalid_value")
    return FeedbackFilter(
        model=model,
        flag=_choice(request, "flag", _FLAGS),
        rating=_choice(request, "rating", _RATINGS),
        since=_int(request, "since", 0, _MAX_TIME),
        until=_int(request, "until", 0, _MAX_TIME),
    )


def records_routes(ctx: Context) -> list[HTTPRouteHandler]:
    """Every records route."""
    return [*_internal(ctx), *_public(ctx), *_admin(ctx)]


def _internal(ctx: Context) -> list[HTTPRouteHandler]:
    chat_limit = ctx.settings.database.max_chat_bytes

    @post("/v1/internal/chats", status_code=200, request_max_body_size=chat_limit)
    async def store_chat(request: Request[Any, Any, Any]) -> Response[bytes]:
        require_token(request, ctx.settings.internal_token, "internal")
        records = _records(ctx)
        record = await read_struct(request, ChatRecord, chat_limit)
        users = ctx.service.users
        user = await users.by_id(record.subject)
        if user is None or not user.store_chats:
            return json_response(ChatStored(stored=False))
        await records.store_chat(record)
        # A withdrawal clears the flag, then erases: if it cleared it before our insert
        # committed, its erase may have missed the row. Looking again closes that gap.
        again = await users.by_id(record.subject)
        if again is None or not again.store_chats:
            await records.erase_answer(record.subject, record.answer_id)
            return json_response(ChatStored(stored=False))
        return json_response(ChatStored(stored=True))

    @put("/v1/internal/feedback", status_code=200)
    async def put_feedback(request: Request[Any, Any, Any]) -> Response[bytes]:
        require_token(request, ctx.settings.internal_token, "internal")
        records = _records(ctx)
        record = await read_struct(request, FeedbackRecord, ctx.limit)
        created_at, replaced = await records.put_feedback(record)
        return json_response({"created_at": created_at, "replaced": replaced})

    return [store_chat, put_feedback]


def _public(ctx: Context) -> list[HTTPRouteHandler]:
    @get("/v1/me/chats")
    async def list_chats(request: Request[Any, Any, Any]) -> Response[bytes]:
        claims = await ctx.caller(request)
        records = _records(ctx)
        limit = _limit(request)
        after = request.query_params.get("after")
        if after is not None and not 1 <= len(after) <= 128:
            raise InvalidRequest("Invalid 'after'.", param="after", code="invalid_value")
        page = await records.chat_page(claims.sub, limit, after)
        if page is None:
            raise InvalidRequest(
                "Invalid 'after': no stored chat of yours has that id.",
                param="after",
                code="invalid_cursor",
            )
        data, has_more = page
        return json_response(
            ChatPage(
                data=data,
                has_more=has_more,
                first_id=data[0].id if data else None,
                last_id=data[-1].id if data else None,
            )
        )

    @get("/v1/me/chats/export")
    async def export_chats(request: Request[Any, Any, Any]) -> Response[bytes]:
        claims = await ctx.caller(request)
        records = _records(ctx)
        user = await ctx.service.user_of(claims)
        export = ChatExport(
            subject=claims.sub,
            exported_at=int(time.time()),
            retention_days=ctx.settings.database.retention_days,
            store_chats=user.store_chats,
            chats=await records.chats_of(claims.sub),
        )
        response = json_response(export)
        response.headers["content-disposition"] = 'attachment; filename="tiergate-chats.json"'
        response.headers["cache-control"] = "no-store"
        return response

    @delete("/v1/me/chats", status_code=200)
    async def erase_all(request: Request[Any, Any, Any]) -> Response[bytes]:
        claims = await ctx.caller(request)
        deleted = await _records(ctx).erase_chats(claims.sub)
        return json_response(ChatsErased(deleted=deleted))

    @delete("/v1/me/chats/{conversation_id:str}", status_code=200)
    async def erase_conversation(
        request: Request[Any, Any, Any], conversation_id: FromPath[str]
    ) -> Response[bytes]:
        claims = await ctx.caller(request)
        records = _records(ctx)
        if not 1 <= len(conversation_id) <= 128:
            raise InvalidRequest(
                "Invalid conversation id.", param="conversation_id", code="invalid_value"
            )
        deleted = await records.erase_chats(claims.sub, conversation_id)
        if deleted == 0:
            raise NotFound(
                "No stored chat of yours has that conversation id.",
                param="conversation_id",
                code="conversation_not_found",
            )
        return json_response(ChatsErased(deleted=deleted))

    return [list_chats, export_chats, erase_all, erase_conversation]


def _admin(ctx: Context) -> list[HTTPRouteHandler]:
    def actor(request: Request[Any, Any, Any]) -> str:
        return f"admin@{ctx.client_ip(request)}"

    @get("/v1/admin/feedback")
    async def list_feedback(request: Request[Any, Any, Any]) -> Response[bytes]:
        require_token(request, ctx.settings.admin_token, "admin")
        records = _records(ctx)
        filters = _feedback_filter(request)
        limit = _limit(request)
        after = _int(request, "after", 1, _MAX_TIME)
        await records.audit(actor(request), "feedback.list", None, _detail(filters, after))
        data, has_more = await records.feedback_page(filters, limit, after)
        return json_response(
            FeedbackPage(
                data=data,
                has_more=has_more,
                first_id=data[0].id if data else None,
                last_id=data[-1].id if data else None,
            )
        )

    @get("/v1/admin/feedback/export")
    async def export_feedback(request: Request[Any, Any, Any]) -> Stream:
        require_token(request, ctx.settings.admin_token, "admin")
        records = _records(ctx)
        filters = _feedback_filter(request)
        await records.audit(actor(request), "feedback.export", None, _detail(filters, None))

        async def lines() -> AsyncIterator[bytes]:
            async for batch in records.feedback_batches(filters):
                yield b"".join(_encode(item) + b"\n" for item in batch)

        return Stream(
            lines(),
            media_type="application/jsonl",
            headers={
                "content-disposition": 'attachment; filename="tiergate-feedback.jsonl"',
                "cache-control": "no-store",
            },
        )

    return [list_feedback, export_feedback]


def _detail(filters: FeedbackFilter, after: int | None) -> dict[str, Any]:
    detail: dict[str, Any] = {k: v for k, v in asdict(filters).items() if v is not None}
    if after is not None:
        detail["after"] = after
    return detail
