"""The api-key variant's extras: a redis-server for limits and key records, and one agent key.

The gateway then does what production does for an agent: finds the key by its HMAC in Redis
(cached for a few seconds), applies the agent tier, and decides every request's limits with
the atomic script in Redis — requests, tokens and concurrency all on, set high enough never to
refuse, so the cost is measured and not the refusals.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from tiergate_auth.apikeys import ApiKeyStore
from tiergate_bench.procs import Child, free_port, pinned, wait_until
from tiergate_proto.identity import ApiKeyCreate
from tiergate_state.keys import KeyLayout
from tiergate_state.store import StoreSettings, connect
from tiergate_testkit.redis_server import redis_answers, redis_server_binary

__all__ = ["BenchRedis", "identity_env", "start_identity_store"]

PEPPER = "bench-pepper-not-a-secret-0123456789abcdef"
_LIMITS = {
    "requests": {"limit": 1_000_000_000, "window_s": 60},
    "tokens": {"limit": 1_000_000_000, "window_s": 60},
    "max_concurrent": 100_000,
}


@dataclass
class BenchRedis:
    """A redis-server started for one system."""

    child: Child
    port: int

    @property
    def url(self) -> str:
        """Its URL."""
        return f"redis://127.0.0.1:{self.port}/0"


async def _create_key(url: str) -> str:
    store = connect(StoreSettings(url=url))
    try:
        keys = ApiKeyStore(store, KeyLayout(), PEPPER.encode())
        key, _ = await keys.create(ApiKeyCreate(owner="bench"))
        return key
    finally:
        await store.aclose()


def start_identity_store(name: str, workdir: Path) -> tuple[BenchRedis, str]:
    """A redis-server on CPU 0 (with the load generator) holding one agent key; the key."""
    binary = redis_server_binary()
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    child = Child(f"{name}-redis", pinned("0", argv), workdir / f"{name}-redis.log")
    wait_until(lambda: redis_answers(port), 15, "redis answering PING", child)
    redis = BenchRedis(child, port)
    return redis, asyncio.run(_create_key(redis.url))


def identity_env(redis_url: str) -> dict[str, str]:
    """Gateway settings for the api-key variant."""
    return {
        "TIERGATE_GATEWAY_STORE__URL": redis_url,
        "TIERGATE_GATEWAY_AUTH__PEPPER": PEPPER,
        "TIERGATE_GATEWAY_TIERS": json.dumps({"anonymous": {}, "agent": _LIMITS}),
    }
