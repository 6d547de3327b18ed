"""The retention purge: every `purge_interval_s`, delete consented chats older than the retention.

One `DELETE ... WHERE created_at < cutoff` on its index per pass. Several replicas purging at
once is harmless: each deletes what is still there, and the counts add up to what was removed.
A failing database is logged and tried again next pass; the loop never dies of it.

Each pass also finishes withdrawals of consent whose erasure failed (the database was down
when the user withdrew): their chats up to the withdrawal's time are erased (a consent given
again since keeps what was stored after it).
"""

from __future__ import annotations

import asyncio

import structlog
from prometheus_client import Counter
from redis.exceptions import RedisError

from tiergate_auth.records.repository import Records
from tiergate_auth.users import UserStore
from tiergate_runtime.errors import ApiError

__all__ = ["Purger"]

_log = structlog.get_logger("tiergate.auth.purge")


class Purger:
    """The purge pass and the loop that runs it."""

    def __init__(
        self, records: Records, interval_s: float, purged: Counter, users: UserStore | None = None
    ) -> None:
        self.records = records
        self.users = users
        self.interval_s = interval_s
        self.purged = purged

    async def run_once(self, now: int | None = None) -> int:
        """One pass: how many records were removed."""
        count = await self.records.purge(now)
        self.purged.inc(count)
        if self.users is not None:
            for user_id, withdrawn_at in (await self.users.pending_erasures()).items():
                erased = await self.records.erase_chats(user_id, until=withdrawn_at)
                await self.users.erasure_done(user_id)
                _log.info("withdrawal_erasure_finished", sub=user_id, count=erased)
        _log.info(
            "chats_purged", count=count, retention_days=self.records.db.settings.retention_days
        )
        return count

    async def loop(self) -> None:
        """Purge now and then every interval, until cancelled."""
        while True:
            try:
                await self.run_once()
            except (ApiError, RedisError):  # the database or the store is down: next pass
                _log.warning("chats_purge_failed", retry_in_s=self.interval_s)
            await asyncio.sleep(self.interval_s)
