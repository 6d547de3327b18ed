"""Gateway config validation: every mistake names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate_gateway.settings import ENV_PREFIX, GatewaySettings, validate
from tiergate_runtime.settings import SettingsError, load_settings

GOOD = """
[backends.cpu]
base_url = "http://127.0.0.1:8083/v1"
kind = "llamacpp"

[[models]]
id = "tiergate-small"
backend = "cpu"
engine_model = "smollm2"
"""


def load(tmp_path: Path, toml: str, **env: str) -> GatewaySettings:
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    environ = {f"{ENV_PREFIX}CONFIG": str(path), **{f"{ENV_PREFIX}{k}": v for k, v in env.items()}}
    return validate(load_settings(GatewaySettings, env_prefix=ENV_PREFIX, environ=environ))


def test_defaults_are_valid() -> None:
    settings = validate(GatewaySettings())
    assert [m.id for m in settings.models] == ["tiergate-small"]
    assert settings.backends["cpu"].kind == "llamacpp"


def test_good_config_and_env_override(tmp_path: Path) -> None:
    settings = load(tmp_path, GOOD, BACKENDS__CPU__READ_TIMEOUT_S="12.5")
    assert settings.backends["cpu"].read_timeout_s == 12.5
    assert settings.models[0].engine_model == "smollm2"


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        (
            GOOD.replace('backend = "cpu"', 'backend = "gpu"'),
            {},
            "invalid setting models[0].backend: unknown backend 'gpu' (defined: cpu)",
        ),
        (
            GOOD + GOOD.split("[[models]]")[1].join(["[[models]]", ""]),
            {},
            "invalid setting models[1].id: duplicate model 'tiergate-small'",
        ),
        (
            GOOD.replace("http://127.0.0.1:8083/v1", "ftp://x"),
            {},
            "invalid setting backends.cpu.base_url: expected an http(s) URL",
        ),
        (
            GOOD.replace('kind = "llamacpp"', 'kind = "tgi"'),
            {},
            "invalid setting backends.cpu.kind: Invalid enum value 'tgi'",
        ),
        (
            GOOD.replace('kind = "llamacpp"', "kinds = 1"),
            {},
            "invalid setting backends.cpu: Object contains unknown field `kinds`",
        ),
        (
            GOOD,
            {"BACKENDS__CPU__CONNECT_TIMEOUT_S": "-1"},
            "invalid setting backends.cpu.connect_timeout_s: Expected `float` > 0.0",
        ),
        (
            GOOD,
            {"BACKENDS__CPU__MAX_CONNECTIONS": "lots"},
            "invalid setting backends.cpu.max_connections: Expected `int`",
        ),
        (
            GOOD.replace("[backends.cpu]", "[backends.CPU]"),
            {},
            "invalid setting backends (a key): Expected `str` matching regex",
        ),
        (
            GOOD.replace('id = "tiergate-small"', 'id = ""'),
            {},
            "invalid setting models[0].id: Expected `str` matching regex",
        ),
        (GOOD, {"MAX_BODY_BYTES": "10"}, "invalid setting max_body_bytes: Expected `int` >= 1024"),
        (
            GOOD,
            {"MODELS": '[{"id": "x"}]'},
            "invalid setting models[0]: Object missing required field `backend`",
        ),
        (
            GOOD,
            {"BACKENDS__CPU__AUTH_HEADER": "api-key"},
            "invalid setting backends.cpu.auth_header: unused without api_key or api_key_file",
        ),
        (
            GOOD,
            {"BACKENDS__CPU__API_KEY": "k", "BACKENDS__CPU__API_KEY_FILE": "/etc/hostname"},
            "invalid setting backends.cpu.api_key_file: set api_key or api_key_file, not both",
        ),
        (
            GOOD,
            {"BACKENDS__CPU__API_KEY_FILE": "/nonexistent/key"},
            "invalid setting backends.cpu.api_key_file: cannot read '/nonexistent/key'",
        ),
        (
            GOOD,
            {"BACKENDS__CPU__AUTH_HEADER": "bad header", "BACKENDS__CPU__API_KEY": "k"},
            "invalid setting backends.cpu.auth_header: Expected `str` matching regex",
        ),
        (
            GOOD,
            {"MODELS": '[{"id": "m", "backend": "cpu", "engine_model": "x", "endpoints": []}]'},
            "invalid setting models[0].endpoints: name at least one",
        ),
        (
            GOOD,
            {"MODELS": '[{"id": "m", "backend": "cpu", "engine_model": "x", "endpoints": ["i"]}]'},
            "invalid setting models[0].endpoints[0]: Invalid enum value 'i'",
        ),
        (
            GOOD,
            {
                "MODELS": '[{"id": "e", "backend": "cpu", "engine_model": "x", '
                '"endpoints": ["embeddings"]}]',
                "ROUTES": '[{"models": ["e"]}]',
                "TIERS": '{"anonymous": {}}',
            },
            "invalid setting routes[0].models[0]: 'e' does not serve chat",
        ),
    ],
)
def test_invalid_config_names_the_field(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, toml, **env)
    assert message in str(caught.value)
