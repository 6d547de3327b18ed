"""One lookup in flight per key: concurrent callers for the same key share its result.

A burst of requests with a credential that is not cached yet (an agent fleet after a restart)
must cost one lookup, not one per request (issue 10, defect 3: 1,000 concurrent requests with
a new key exhausted the lookup pool and were answered 503 while auth was healthy).

What callers rely on:
- While a lookup for `key` runs, every further `run(key, …)` awaits that lookup: its value, or
  its exception (a failure is shared too; the next call after it starts a fresh lookup).
- The lookup runs in its own task. A caller that is cancelled (a client that went away) stops
  waiting; the lookup goes on for the others, and its entry is removed when it ends, whether
  anyone still waits or not. So the table holds at most one entry per lookup in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Coalescer"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """Single-flight calls per key; see the module docstring."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._inflight: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        """How many lookups are in flight now."""
        return len(self._inflight)

    async def run(self, key: K, call: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """`await call()`, or the result of the one already running for `key`."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(call(), name=f"{self._name}-lookup")
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        # shield: cancelling this caller must not cancel the lookup the others wait for.
        return await asyncio.shield(task)

    def _settle(self, key: K, task: asyncio.Task[V]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            # Mark the exception retrieved: when every waiter was cancelled nobody reads it,
            # and asyncio would log "exception was never retrieved" for an expected failure.
            task.exception()
