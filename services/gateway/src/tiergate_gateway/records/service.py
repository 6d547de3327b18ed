"""`Records`: what the pipeline and `POST /v1/feedback` ask of the records (see the package).

Per answer (chat, completions, Responses; never embeddings): `tap(send, ...)` before the
answer goes out, `finish(tap, ...)` after the request, however it ended. Only a user who
consented (`store_chats` in their token) and whose answer was a 200 is sent to the history;
the auth service checks the consent again when the record arrives (a withdrawal since the
token was issued wins).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import structlog
from litestar.types import Send

from tiergate_gateway.identity.principal import Principal
from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.records.ledger import AnswerEntry, AnswerLedger
from tiergate_gateway.records.settings import RecordsSettings
from tiergate_gateway.records.tap import AnswerTap
from tiergate_gateway.records.writer import RecordWriter
from tiergate_proto.records import ChatRecord, FeedbackRecord, FeedbackRequest, FeedbackStored
from tiergate_runtime.edge import AccessRecord
from tiergate_runtime.errors import InvalidRequest, NotFound
from tiergate_state.hashing import digest

if TYPE_CHECKING:
    from tiergate_gateway.pipeline.exchange import Exchange

__all__ = ["Records"]

_log = structlog.get_logger("tiergate.gateway.records")
_ANSWER_APIS = frozenset({"chat", "completions", "responses"})


def _conversation(value: str | None, answer_id: str) -> str:
    """The client's conversation id when it is a usable one, else the answer's own id."""
    if value is not None:
        value = value.strip()
        if 0 < len(value) <= 128 and value.isprintable():
            return value
    return answer_id


class Records:
    """Feedback and consented history for one gateway process."""

    def __init__(
        self,
        settings: RecordsSettings,
        ledger: AnswerLedger,
        writer: RecordWriter | None,
        metrics: GatewayMetrics,
        *,
        pepper: str | None,
    ) -> None:
        """`writer` None: no auth service to write to (feedback 404s, no chat is stored)."""
        self.settings = settings
        self.ledger = ledger
        self.writer = writer
        self.metrics = metrics
        # Without the auth pepper the digest is still keyed, per process: comparable within
        # one run only, and never the address itself.
        self._pepper = (pepper or os.urandom(32).hex()).encode()
        self._header = settings.conversation_header.lower()

    async def aclose(self) -> None:
        """At shutdown: the pending history writes get a few seconds to finish."""
        if self.writer is not None:
            await self.writer.drain()

    def stores_chats_of(self, principal: Principal) -> bool:
        """Whether this principal's exchanges go to the history."""
        return (
            self.writer is not None
            and self.settings.store_chats
            and principal.kind == "user"
            and principal.store_chats
        )

    def tap(self, send: Send, principal: Principal, api: str, record: AccessRecord) -> AnswerTap:
        """`send`, watched: the answer's id into the ledger, the answer assembled if stored."""
        tier, subject = principal.tier, principal.subject
        stored = self.stores_chats_of(principal)

        async def remember(answer_id: str) -> object:
            entry = AnswerEntry(
                tier=tier,
                subject=subject,
                model=record.model or "",
                backend=record.backend or "",
                api=api,
                answered_at=int(time.time()),
                chat_stored=stored,
            )
            return await self.ledger.remember(answer_id, entry)

        return AnswerTap(send, api, remember, assemble=stored)

    def answers(self, api: str) -> bool:
        """Whether `api`'s responses are answers that can be rated and stored."""
        return self.settings.enabled and api in _ANSWER_APIS

    async def finish(self, tap: AnswerTap, exchange: Exchange) -> None:
        """After the request: the ledger write awaited, the consented exchange sent off."""
        principal, record, api = exchange.principal, exchange.record, tap.api
        try:
            await tap.settled()
        except Exception:  # the ledger logs its own failures; this must not raise
            _log.exception("answer_ledger_failed")
        answer_id, answer = tap.answer_id, tap.answer
        if answer_id is None or answer is None or tap.status != 200 or self.writer is None:
            return
        chat = ChatRecord(
            answer_id=answer_id,
            subject=principal.subject,
            conversation_id=_conversation(exchange.request.headers.get(self._header), answer_id),
            tier=principal.tier,
            model=record.model or "",
            backend=record.backend or "",
            api=api,
            created_at=int(time.time()),
            messages=_messages(exchange.parsed.raw),
            answer=answer.message(),
            finish_reason=answer.finish_reason,
        )
        self.writer.submit_chat(chat)

    async def feedback(self, principal: Principal, request: FeedbackRequest) -> FeedbackStored:
        """`POST /v1/feedback`: the subject's own answer only, stored by the auth service."""
        if request.rating is None and request.flag is None:
            raise InvalidRequest(
                "Give a 'rating' ('up' or 'down'), a 'flag', or both.",
                param="rating",
                code="missing_required_parameter",
            )
        if self.writer is None or not self.settings.enabled:
            raise NotFound("Feedback is not enabled on this deployment.", code="records_disabled")
        entry = await self.ledger.owned(request.id, principal.tier, principal.subject)
        saved = await self.writer.put_feedback(
            FeedbackRecord(
                answer_id=request.id,
                subject_digest=digest(self._pepper, principal.tier, principal.subject),
                tier=entry.tier,
                model=entry.model or "unknown",
                backend=entry.backend or "unknown",
                api=entry.api,
                answered_at=entry.answered_at,
                rating=request.rating,
                flag=request.flag,
                comment=request.comment,
            )
        )
        self.metrics.feedback(entry.model or "unknown", request.rating, request.flag)
        return FeedbackStored(
            id=request.id,
            rating=request.rating,
            flag=request.flag,
            comment=request.comment,
            created_at=saved.created_at,
            replaced=saved.replaced,
        )


def _messages(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's conversation as messages (a text completion's prompt as one user turn)."""
    messages = raw.get("messages")
    if isinstance(messages, list):
        return [m for m in messages if isinstance(m, dict)]
    prompt = raw.get("prompt")
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list):
        return [{"role": "user", "content": p} for p in prompt if isinstance(p, str)]
    return []
