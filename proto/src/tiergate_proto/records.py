"""Durable-record contracts: feedback on answers and consented chat history (issue 15).

The auth service owns these records (it owns users and their `store_chats` consent: storing,
reading, erasing and withdrawing are one service's transactions). Gateways write them through
its internal API (`/v1/internal/chats`, `/v1/internal/feedback`); users read and erase their
history through the public `/v1/me/chats` (relayed by the gateway); admins read feedback at
`/v1/admin/feedback`.

Public request types tolerate unknown fields (a client may send more than we read); internal
records do too, so that an older auth service accepts what a newer gateway writes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "MAX_COMMENT_CHARS",
    "ChatEntry",
    "ChatExport",
    "ChatPage",
    "ChatRecord",
    "ChatStored",
    "ChatsErased",
    "FeedbackFlag",
    "FeedbackItem",
    "FeedbackPage",
    "FeedbackRating",
    "FeedbackRecord",
    "FeedbackRequest",
    "FeedbackStored",
]

MAX_COMMENT_CHARS = 2000
"""A feedback comment's longest length (characters); longer is a 400, not cut."""

FeedbackRating = Literal["up", "down"]
FeedbackFlag = Literal["inappropriate", "offensive", "wrong", "unsafe", "other"]
"""Why an answer was flagged (a flag is counted per model and kind: `feedback_flags_total`)."""

AnswerId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Comment = Annotated[str, msgspec.Meta(max_length=MAX_COMMENT_CHARS)]
UnixTime = Annotated[int, msgspec.Meta(ge=0)]


class FeedbackRequest(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/feedback`: a rating or a flag (or both) on one answer, by whoever got it."""

    id: AnswerId
    """The answer's `id` (`chatcmpl-…`, `cmpl-…`, `resp_…`) as the client received it."""
    rating: FeedbackRating | None = None
    flag: FeedbackFlag | None = None
    comment: Comment | None = None


class FeedbackStored(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to `POST /v1/feedback` (200): what is now on record for the answer."""

    id: str
    object: Literal["feedback"] = "feedback"
    rating: FeedbackRating | None = None
    flag: FeedbackFlag | None = None
    comment: str | None = None
    created_at: UnixTime
    """When this feedback was given (a second one replaces the first: its time)."""
    replaced: bool = False
    """True when it replaced earlier feedback on the same answer."""


class FeedbackRecord(msgspec.Struct, frozen=True, kw_only=True):
    """`PUT /v1/internal/feedback` (gateway → auth): one answer's feedback, keyed by its id.

    Never the prompt or the answer: those exist only in a consented chat record.
    """

    answer_id: AnswerId
    subject_digest: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    """HMAC of the tier and subject under the pepper (an anonymous subject is an address)."""
    tier: Name
    model: Name
    """The public model id the answer was asked of."""
    backend: Name
    """The backend that answered."""
    api: Name
    """The endpoint: `chat`, `completions` or `responses`."""
    answered_at: UnixTime
    rating: FeedbackRating | None = None
    flag: FeedbackFlag | None = None
    comment: Comment | None = None


class FeedbackItem(msgspec.Struct, frozen=True, kw_only=True):
    """One feedback record as the admin API lists and exports it."""

    id: int
    answer_id: str
    tier: str
    model: str
    backend: str
    api: str
    rating: FeedbackRating | None
    flag: FeedbackFlag | None
    comment: str | None
    answered_at: UnixTime
    created_at: UnixTime
    object: Literal["feedback"] = "feedback"


class FeedbackPage(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/admin/feedback`: newest first; `?after=<last_id>` for the next page."""

    data: list[FeedbackItem]
    has_more: bool
    first_id: int | None = None
    last_id: int | None = None
    object: Literal["list"] = "list"


class ChatRecord(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/internal/chats` (gateway → auth): one consented exchange, as it happened.

    Stored only if the subject's consent still stands when it arrives (the token that
    carried it may be older than a withdrawal).
    """

    answer_id: AnswerId
    subject: Name
    """The user id (the `sub` of their session token)."""
    conversation_id: AnswerId
    """The client's `x-tiergate-conversation` header, else the answer id (one exchange)."""
    tier: Name
    model: Name
    backend: Name
    api: Name
    created_at: UnixTime
    messages: list[dict[str, Any]]
    """The request's messages as the client sent them (Responses: its input as messages)."""
    answer: dict[str, Any]
    """The assistant message (a stream's deltas assembled): `role`, `content`, `tool_calls`."""
    finish_reason: str | None = None


class ChatStored(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to `POST /v1/internal/chats`: whether the record was kept."""

    stored: bool
    """False: no consent (withdrawn since the token was issued, or never given)."""


class ChatEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One stored exchange, as its owner reads and exports it."""

    id: str
    """The answer's id."""
    conversation_id: str
    model: str
    api: str
    created_at: UnixTime
    expires_at: UnixTime
    """When the purge removes it (created_at + the retention)."""
    messages: list[dict[str, Any]]
    answer: dict[str, Any]
    finish_reason: str | None = None
    object: Literal["chat.record"] = "chat.record"


class ChatPage(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/me/chats`: newest first; `?after=<last_id>` for the next page."""

    data: list[ChatEntry]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
    object: Literal["list"] = "list"


class ChatExport(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/me/chats/export`: everything stored for the user, as one JSON document."""

    subject: str
    exported_at: UnixTime
    retention_days: int
    store_chats: bool
    """The consent as it stands now."""
    chats: list[ChatEntry]
    object: Literal["chat.export"] = "chat.export"


class ChatsErased(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to `DELETE /v1/me/chats` and `DELETE /v1/me/chats/{conversation_id}`."""

    deleted: int
    """Records removed."""
    object: Literal["chat.deleted"] = "chat.deleted"
