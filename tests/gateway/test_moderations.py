"""`POST /v1/moderations` through the gateway: OpenAI's shape, the official client, identity,
the tier's limits, bounds on hostile bodies, and which filter answers."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import openai
import pytest
from openai.types import (
    ModerationImageURLInputParam,
    ModerationMultiModalInputParam,
    ModerationTextInputParam,
)

from tiergate_gateway.content_filter import ContentFilterSettings
from tiergate_gateway.content_filter.moderation import CATEGORIES, MAX_INPUTS
from tiergate_gateway.settings import GatewaySettings, TierPolicy
from tiergate_proto.identity import Window
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import gateway_settings, running

OPENAI_CATEGORIES = {
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
}


def _settings(engine: FakeEngine, **tier: Any) -> GatewaySettings:
    policy = TierPolicy(**tier)
    return msgspec.structs.replace(
        gateway_settings(engine.base_url), tiers={"anonymous": policy}, max_body_bytes=1 << 20
    )


async def test_the_official_client_gets_a_verdict_per_input(engine: FakeEngine) -> None:
    async with running(_settings(engine, content_filter=ContentFilterSettings()), engine) as gw:
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="anonymous", max_retries=0)
        single = await client.moderations.create(input="what the fuck")
        assert single.results[0].flagged is True
        assert single.id.startswith("modr-")
        many = await client.moderations.create(
            model="omni-moderation-latest",
            input=["hello there", "sh1t", "Scunthorpe"],
        )
        assert [r.flagged for r in many.results] == [False, True, False]
        assert many.model == "omni-moderation-latest"
        assert many.results[0].categories.hate is False
        text: ModerationTextInputParam = {"type": "text", "text": "you bastard"}
        image: ModerationImageURLInputParam = {
            "type": "image_url",
            "image_url": {"url": "https://example.org/a.png"},
        }
        inputs: list[ModerationMultiModalInputParam] = [text, image]
        parts = await client.moderations.create(input=inputs)
        assert [r.flagged for r in parts.results] == [True, False]
        await client.close()
        metrics = (await gw.client.get("/metrics")).text
        found = re.search(
            r'content_filtered_total\{direction="moderation",tier="anonymous"\} (\S+)', metrics
        )
        assert found
        assert float(found.group(1)) == 3


async def test_the_shape_is_openais_plus_profanity(engine: FakeEngine) -> None:
    async with running(_settings(engine), engine) as gateway:
        response = await gateway.client.post("/v1/moderations", json={"input": "merde"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert set(body) == {"id", "model", "results"}
        assert body["model"] == "tiergate-profanity"
        (result,) = body["results"]
        assert result["flagged"] is True
        assert set(result["categories"]) == OPENAI_CATEGORIES | {"profanity"}
        assert set(CATEGORIES) == OPENAI_CATEGORIES
        assert result["categories"]["profanity"] is True
        assert result["category_scores"]["profanity"] == 1.0
        assert not any(result["categories"][key] for key in OPENAI_CATEGORIES)
        assert all(result["category_scores"][key] == 0.0 for key in OPENAI_CATEGORIES)
        assert set(result["category_applied_input_types"]) == set(result["categories"])
        assert result["category_applied_input_types"]["hate"] == ["text"]


async def test_the_tiers_own_filter_answers(engine: FakeEngine) -> None:
    own = ContentFilterSettings(extra_words=("zorgleflap",), allow_words=("merde",))
    async with running(_settings(engine, content_filter=own), engine) as gateway:
        response = await gateway.client.post(
            "/v1/moderations", json={"input": ["zorgleflap", "merde", "fuck"]}
        )
        assert [r["flagged"] for r in response.json()["results"]] == [True, False, True]
    # A tier whose filter is off: the default lists answer.
    off = ContentFilterSettings(enabled=False, extra_words=("zorgleflap",))
    async with running(_settings(engine, content_filter=off), engine) as gateway:
        response = await gateway.client.post(
            "/v1/moderations", json={"input": ["zorgleflap", "merde"]}
        )
        assert [r["flagged"] for r in response.json()["results"]] == [False, True]


async def test_a_bad_credential_is_a_401(engine: FakeEngine) -> None:
    async with running(_settings(engine), engine) as gateway:
        response = await gateway.client.post(
            "/v1/moderations",
            json={"input": "hello"},
            headers={"authorization": "Bearer tg-not-a-real-key"},
        )
        assert response.status_code == 401, response.text
        assert response.json()["error"]["type"] == "authentication_error"


async def test_the_tiers_rate_limit_applies(engine: FakeEngine) -> None:
    settings = _settings(engine, requests=Window(limit=2, window_s=60))
    async with running(settings, engine) as gateway:
        for _ in range(2):
            ok = await gateway.client.post("/v1/moderations", json={"input": "hello"})
            assert ok.status_code == 200
            assert ok.headers["x-ratelimit-limit-requests"] == "2"
        refused = await gateway.client.post("/v1/moderations", json={"input": "hello"})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(refused.headers["retry-after"]) >= 1


HOSTILE: list[tuple[bytes, int, str | None]] = [
    (b"{not json", 400, None),
    (b"[]", 400, None),
    (b"", 400, None),
    (json.dumps({"input": []}).encode(), 400, "input"),
    (json.dumps({}).encode(), 400, "input"),
    (json.dumps({"input": None}).encode(), 400, "input"),
    (json.dumps({"input": 42}).encode(), 400, "input"),
    (json.dumps({"input": ["ok", 7]}).encode(), 400, "input[1]"),
    (json.dumps({"input": [{"type": "text"}]}).encode(), 400, "input[0]"),
    (json.dumps({"input": [{"type": "audio", "audio": {}}]}).encode(), 400, "input[0]"),
    (json.dumps({"input": ["x"] * (MAX_INPUTS + 1)}).encode(), 400, "input"),
    (json.dumps({"input": ["x"] * 10_000}).encode(), 400, "input"),
    (json.dumps({"input": ["word " * 20_000, "y"]}).encode(), 400, "input"),
    (json.dumps({"input": "hi", "model": 3}).encode(), 400, "model"),
    (json.dumps({"input": "x" * (2 << 20)}).encode(), 413, None),
]


@pytest.mark.parametrize(("body", "status", "param"), HOSTILE)
async def test_hostile_bodies_get_envelopes(
    engine: FakeEngine, body: bytes, status: int, param: str | None
) -> None:
    async with running(_settings(engine), engine) as gateway:
        response = await gateway.client.post(
            "/v1/moderations", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        if param is not None:
            assert error["param"] == param


async def test_only_post(engine: FakeEngine) -> None:
    async with running(_settings(engine), engine) as gateway:
        response = await gateway.client.get("/v1/moderations")
        assert response.status_code == 405
        assert "error" in response.json()
