"""Routed models through the gateway, in process: the workload header and the table's choice."""

from __future__ import annotations

import msgspec
import pytest

from tiergate_gateway.routing.table import RouteRule
from tiergate_gateway.settings import BackendSettings, ModelAlias, TierPolicy, validate
from tiergate_runtime.settings import SettingsError
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import ALIAS, chat_body, gateway_settings, running


def routed_settings(small: FakeEngine, big: FakeEngine):  # type: ignore[no-untyped-def]
    base = gateway_settings(small.base_url)
    return msgspec.structs.replace(
        base,
        backends={**base.backends, "big": BackendSettings(base_url=f"{big.base_url}/v1")},
        models=[
            *base.models,
            ModelAlias(id="tiergate-large", backend="big", engine_model="engine-large"),
            ModelAlias(id="tiergate", backend="cpu", engine_model="engine-small", routed=True),
        ],
        routes=[
            RouteRule(workload="code", models=["tiergate-large", ALIAS]),
            RouteRule(language="de", models=["tiergate-large"]),
            RouteRule(models=[ALIAS]),
        ],
        tiers={"anonymous": TierPolicy(max_tokens=100)},
    )


async def test_routed_model_follows_the_table(engine: FakeEngine) -> None:
    async with (
        FakeEngine(models=["engine-large"]) as big,
        running(routed_settings(engine, big), engine) as gateway,
    ):
        code = await gateway.client.post(
            "/v1/chat/completions",
            json=chat_body(
                model="tiergate",
                messages=[{"role": "user", "content": "Write a Python function to sort."}],
            ),
        )
        assert code.status_code == 200
        assert code.headers["x-tiergate-workload"] == "code"
        assert code.headers["x-tiergate-model"] == "tiergate-large"
        assert code.json()["model"] == "tiergate-large"
        sent = [r for r in big.requests if r.path == "/v1/chat/completions"][-1].body
        assert isinstance(sent, dict)
        assert sent["model"] == "engine-large"

        german = await gateway.client.post(
            "/v1/chat/completions",
            json=chat_body(
                model="tiergate",
                messages=[
                    {
                        "role": "user",
                        "content": "Erkläre mir bitte, wie Ebbe und Flut entstehen.",
                    }
                ],
            ),
        )
        assert german.headers["x-tiergate-workload"] == "chat; lang=de"
        assert german.headers["x-tiergate-model"] == "tiergate-large"

        plain = await gateway.client.post("/v1/chat/completions", json=chat_body(model="tiergate"))
        assert plain.headers["x-tiergate-model"] == ALIAS

        # A model asked for by name is not routed; the header still says what it is.
        pinned = await gateway.client.post(
            "/v1/chat/completions",
            json=chat_body(messages=[{"role": "user", "content": "Write a poem."}]),
        )
        assert pinned.headers["x-tiergate-model"] == ALIAS
        assert pinned.headers["x-tiergate-workload"] == "creative"


def test_routes_must_name_known_models(engine: FakeEngine) -> None:
    settings = msgspec.structs.replace(
        gateway_settings(engine.base_url), routes=[RouteRule(models=["nope"])]
    )
    with pytest.raises(SettingsError, match=r"routes\[0\].models\[0\]"):
        validate(settings)
