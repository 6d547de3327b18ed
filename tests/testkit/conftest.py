"""Fixtures for the fake engine tests: a running engine and clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from tiergate_testkit.fake_engine import FakeEngine

MODELS = ["fake-model", "other-model"]


@pytest.fixture
async def engine() -> AsyncIterator[FakeEngine]:
    async with FakeEngine(models=MODELS) as running:
        yield running


@pytest.fixture
async def http(engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=engine.base_url, timeout=5.0) as client:
        yield client


@pytest.fixture
async def oai(engine: FakeEngine) -> AsyncIterator[openai.AsyncOpenAI]:
    # max_retries=0: a retried fault would hide what the fake did to the first request.
    async with openai.AsyncOpenAI(
        base_url=engine.base_url + "/v1", api_key="x", max_retries=0, timeout=5.0
    ) as client:
        yield client
