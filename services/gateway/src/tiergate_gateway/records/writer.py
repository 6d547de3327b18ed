"""Writes to the auth service's records: consented chats in the background, feedback at once.

A chat record is sent after its answer went out, never holding the answer up: queued (at
most `max_pending` per process) and written one after the other, in the order the answers
ended — the history lists a user's exchanges newest first, and its times are in seconds, so
the order they are stored in breaks ties — retried with backoff (tenacity) on a refused
connection, a timeout or a 5xx; one that cannot be written is counted
(`records_writes_total{outcome="failed"|"dropped"}`) and logged by its answer id — never by
its text. At shutdown the queued writes get a few seconds to finish. Feedback is the client's
own request: it is written while the client waits, and a failure is the client's 503.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import msgspec
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from tiergate_gateway.metrics import GatewayMetrics
from tiergate_proto.errors import ErrorEnvelope
from tiergate_proto.records import ChatRecord, ChatStored, FeedbackRecord
from tiergate_runtime.errors import ApiError, ServiceUnavailable

__all__ = ["FeedbackSaved", "RecordWriter"]

_log = structlog.get_logger("tiergate.gateway.records")
_encode = msgspec.json.Encoder().encode
_stored = msgspec.json.Decoder(ChatStored).decode
_envelope = msgspec.json.Decoder(ErrorEnvelope).decode


class FeedbackSaved(msgspec.Struct, frozen=True):
    """What the auth service answers to a feedback write."""

    created_at: int
    replaced: bool = False


_saved = msgspec.json.Decoder(FeedbackSaved).decode


class _Retryable(Exception):
    """The auth service could not take the write now (connection, timeout, 5xx)."""


class RecordWriter:
    """The auth service's internal records API, for one gateway process."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        token: str,
        metrics: GatewayMetrics,
        *,
        retries: int,
        max_pending: int,
        max_chat_bytes: int,
    ) -> None:
        """`max_pending`: chat records queued at most (more are dropped and counted)."""
        self._client = client
        self._base = base_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        self._metrics = metrics
        self._retries = retries
        self._max_chat_bytes = max_chat_bytes
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(max_pending)
        self._worker: asyncio.Task[None] | None = None

    def submit_chat(self, record: ChatRecord) -> None:
        """Store a consented exchange in the background (see the module docstring)."""
        body = _encode(record)
        if len(body) > self._max_chat_bytes:
            self._dropped(record, "too_large")
            return
        try:
            self._queue.put_nowait((record.answer_id, body))
        except asyncio.QueueFull:
            self._dropped(record, "backlog")
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._work())

    async def put_feedback(self, record: FeedbackRecord) -> FeedbackSaved:
        """Write one answer's feedback; the auth service's 4xx is the client's, else 503."""
        try:
            response = await self._send("PUT", "/v1/internal/feedback", _encode(record), retries=1)
        except _Retryable as exc:
            self._metrics.records_write("feedback", "failed")
            raise ServiceUnavailable(
                "Feedback cannot be stored right now; retry shortly.",
                retry_after=2,
                code="records_unavailable",
            ) from exc
        if response.status_code != 200:
            self._metrics.records_write("feedback", "refused")
            raise _passed_on(response)
        self._metrics.records_write("feedback", "stored")
        try:
            return _saved(response.content)
        except msgspec.DecodeError as exc:
            raise ServiceUnavailable(
                "The records service gave an unreadable answer; retry shortly.",
                retry_after=2,
                code="records_unavailable",
            ) from exc

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Give the queued writes up to `timeout_s` to finish (at shutdown), then stop."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            _log.warning("records_writes_abandoned", count=self._queue.qsize())
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    async def _work(self) -> None:
        """Write the queued chat records in order, one at a time."""
        while True:
            answer_id, body = await self._queue.get()
            try:
                await self._write_chat(answer_id, body)
            except Exception:  # never let one record stop the ones behind it
                _log.exception("chat_record_failed", answer_id=answer_id[:128])
            finally:
                self._queue.task_done()

    async def _write_chat(self, answer_id: str, body: bytes) -> None:
        try:
            response = await self._send("POST", "/v1/internal/chats", body, retries=self._retries)
        except _Retryable as exc:
            self._metrics.records_write("chat", "failed")
            _log.warning("chat_record_failed", answer_id=answer_id[:128], error=str(exc))
            return
        if response.status_code != 200:
            self._metrics.records_write("chat", "refused")
            _log.warning(
                "chat_record_refused", answer_id=answer_id[:128], status=response.status_code
            )
            return
        try:
            stored = _stored(response.content).stored
        except msgspec.DecodeError:
            stored = False
        self._metrics.records_write("chat", "stored" if stored else "declined")

    def _dropped(self, record: ChatRecord, why: str) -> None:
        self._metrics.records_write("chat", "dropped")
        _log.warning("chat_record_dropped", answer_id=record.answer_id[:128], reason=why)

    async def _send(self, method: str, path: str, body: bytes, *, retries: int) -> httpx.Response:
        """One write, retried on what may pass (`_Retryable` when every attempt failed)."""
        url = self._base + path
        response: httpx.Response | None = None
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_Retryable),
            stop=stop_after_attempt(retries + 1),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            reraise=True,
        ):
            with attempt:
                try:
                    response = await self._client.request(
                        method, url, content=body, headers=self._headers
                    )
                except httpx.HTTPError as exc:
                    raise _Retryable(type(exc).__name__) from exc
                if response.status_code >= 500:
                    raise _Retryable(f"status {response.status_code}")
        assert response is not None
        return response


def _passed_on(response: httpx.Response) -> ApiError:
    """The auth service's 4xx answer as ours (its envelope's message and code)."""
    try:
        error = _envelope(response.content).error
        message, code, param, kind = error.message, error.code, error.param, error.type
    except msgspec.DecodeError:
        message, code, param, kind = "The feedback was refused.", None, None, None
    if 400 <= response.status_code < 500:
        return ApiError(
            message,
            code=code,
            param=param,
            status=response.status_code,
            error_type=kind or "invalid_request_error",
        )
    return ApiError(message, code=code, status=502, error_type="server_error")
