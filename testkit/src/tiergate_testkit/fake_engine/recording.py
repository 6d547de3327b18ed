"""The record of every request the fake served, for tests to inspect."""

from __future__ import annotations

import asyncio
import itertools
from typing import Literal

import msgspec

__all__ = ["Outcome", "RecordedRequest", "Recorder"]

Outcome = Literal[
    "pending",  # still being answered (also: stalled, waiting for the client to leave)
    "completed",  # the whole response was sent (any status the fake chose itself)
    "client_disconnected",  # the client went away first; see `chunks_sent`
    "status",  # the injected error status was sent
    "drop_before_headers",
    "drop_after",
    "malformed",
    "internal_error",  # a bug in the fake: it answered 500 or dropped the connection
]


class RecordedRequest(msgspec.Struct, kw_only=True):
    """One request as the fake saw it, updated live while it is answered.

    `GET /_fake/requests` returns a JSON list of these, oldest first.
    """

    id: int
    """1-based, in arrival order; the completion id is `chatcmpl-fake-<id>` (chat) or
    `cmpl-fake-<id>` (legacy completions)."""
    connection: int
    """1-based id of the TCP connection: equal ids mean a reused (keep-alive) connection."""
    method: str
    path: str
    """The request target without the query string."""
    query: str
    headers: dict[str, str]
    """Lower-cased names; repeated headers are joined with ", "."""
    body: object
    """The parsed JSON body; None if the body was empty or not JSON."""
    outcome: Outcome = "pending"
    status: int | None = None
    """The status line sent, or None if no response headers went out."""
    chunks_sent: int = 0
    """Content chunks (tokens) sent before the outcome was reached."""


class Recorder:
    """Holds the records in arrival order and lets tests wait for them to settle."""

    def __init__(self) -> None:
        self._records: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()

    @property
    def records(self) -> list[RecordedRequest]:
        """The live list; `clear()` empties it in place."""
        return self._records

    def open(
        self,
        *,
        connection: int,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: object,
    ) -> RecordedRequest:
        record = RecordedRequest(
            id=next(self._ids),
            connection=connection,
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=body,
        )
        self._records.append(record)
        self._changed.set()
        return record

    def finish(self, record: RecordedRequest, outcome: Outcome) -> None:
        """Set the final outcome once; later calls keep the first outcome."""
        if record.outcome == "pending":
            record.outcome = outcome
            self._changed.set()

    def clear(self) -> None:
        self._records.clear()

    async def wait_settled(self) -> None:
        """Wait until no record is `pending` (callers bound it with `asyncio.timeout`)."""
        while any(r.outcome == "pending" for r in self._records):
            self._changed.clear()
            await self._changed.wait()
