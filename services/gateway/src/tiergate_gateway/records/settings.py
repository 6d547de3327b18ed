"""`[records]`: feedback on answers and consented chat history (the gateway's side)."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["RecordsSettings"]


class RecordsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the gateway remembers of answers and sends to the auth service's records.

    Both need `[auth] url` and `internal_token`: without them feedback answers 404
    `records_disabled` and no chat is stored.
    """

    enabled: bool = True
    """Remember answers for feedback and store consented chats; false: neither."""
    feedback_window_s: Annotated[int, msgspec.Meta(ge=60, le=30 * 86400)] = 86400
    """How long an answer may be rated after it was given (its id is remembered this long)."""
    store_chats: bool = True
    """Store the exchanges of users who consented (`store_chats`); false: never, whatever
    the consent (the auth service's retention still purges what was stored before)."""
    conversation_header: str = "x-tiergate-conversation"
    """The request header that groups exchanges into one conversation in the history
    (erasable as one); absent: each exchange is its own conversation."""
    max_pending: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    """Chat records queued for the auth service (per process; written one at a time, in the
    order the answers ended); past it a record is dropped, counted and logged by id (the
    answer itself is never held up)."""
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 3
    """Attempts after the first for a write the auth service could not take (backoff)."""
    max_chat_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024
    """A consented exchange larger than this (messages and answer, JSON) is not stored (the
    auth service takes at most its `database.max_chat_bytes`, also 1 MiB by default)."""
