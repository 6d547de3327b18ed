"""Who got which answer: `tg:ans:<id>` → `AnswerEntry`, kept for the feedback window.

Written once per answer, when its id first goes out (before the client can have read the
end of it), read by `POST /v1/feedback`. The entry names the tier and subject the answer was
for: only they may rate it; for anyone else the answer does not exist (404), so a leaked id
says nothing.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from tiergate_runtime.errors import NotFound, ServiceUnavailable
from tiergate_state.keys import KeyLayout

__all__ = ["AnswerEntry", "AnswerLedger"]

_log = structlog.get_logger("tiergate.gateway.records")


class AnswerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One answer as the ledger remembers it (never its text)."""

    tier: str
    subject: str
    model: str
    backend: str
    api: str
    answered_at: int
    chat_stored: bool = False
    """Whether the exchange went to the consented history (then feedback may refer to it)."""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(AnswerEntry).decode


class AnswerLedger:
    """Answer ids in the shared store (Redis, or the in-process stand-in)."""

    def __init__(self, store: aioredis.Redis, keys: KeyLayout, ttl_s: int) -> None:
        self._store = store
        self._keys = keys
        self._ttl_s = ttl_s

    async def remember(self, answer_id: str, entry: AnswerEntry) -> bool:
        """Keep `entry` for the window; False (logged) when the store cannot take it.

        Never raises: the answer is going out whether or not it can be rated later.
        """
        try:
            await self._store.set(self._keys.answer(answer_id), _encode(entry), ex=self._ttl_s)
        except (RedisError, OSError) as exc:
            _log.warning("answer_ledger_unavailable", error=type(exc).__name__)
            return False
        return True

    async def owned(self, answer_id: str, tier: str, subject: str) -> AnswerEntry:
        """The entry of an answer this tier and subject got; NotFound (404) otherwise."""
        try:
            raw = await self._store.get(self._keys.answer(answer_id))
        except (RedisError, OSError) as exc:
            _log.warning("answer_ledger_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable(
                "Feedback cannot be taken right now; retry shortly.",
                retry_after=2,
                code="store_unavailable",
            ) from exc
        entry = None
        if raw is not None:
            try:
                entry = _decode(raw)
            except msgspec.DecodeError:
                _log.warning("answer_entry_unreadable", answer_id=answer_id[:64])
        if entry is None or entry.tier != tier or entry.subject != subject:
            raise NotFound(
                f"No answer with id '{answer_id[:64]}' was found for you (answers can be rated "
                "for a limited time, by whoever received them).",
                param="id",
                code="answer_not_found",
            )
        return entry
