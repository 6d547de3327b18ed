"""A small in-process cache with a fresh period and a longer stale period, bounded in size.

Identity lookups are cached for a few seconds (so a revoked key stops working everywhere
within 5 s) and the last answer is kept longer as a stale fallback for when the store cannot
be reached: a known key keeps working through a store outage; an unknown one does not.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["StaleCache"]

K = TypeVar("K")
V = TypeVar("V")


class StaleCache(Generic[K, V]):
    """`fresh(key)` within `ttl_s` of `put`; `stale(key)` within `stale_s`; LRU past `max_items`."""

    def __init__(
        self,
        ttl_s: float,
        stale_s: float,
        max_items: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._stale_s = stale_s
        self._max = max_items
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def put(self, key: K, value: V) -> None:
        """Remember `value` for `key` as of now."""
        self._items[key] = (self._clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def _get(self, key: K, age_limit: float) -> tuple[bool, V | None]:
        entry = self._items.get(key)
        if entry is None:
            return False, None
        stored, value = entry
        age = self._clock() - stored
        if age > self._stale_s:
            del self._items[key]
            return False, None
        return age <= age_limit, value

    def fresh(self, key: K) -> tuple[bool, V | None]:
        """(True, value) if `key` was put less than `ttl_s` ago."""
        return self._get(key, self._ttl_s)

    def stale(self, key: K) -> tuple[bool, V | None]:
        """(True, value) if `key` was put less than `stale_s` ago."""
        return self._get(key, self._stale_s)
