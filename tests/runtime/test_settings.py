"""Settings loading: TOML, environment overrides, and errors that name the bad field."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tiergate_runtime.server import ServerSettings
from tiergate_runtime.settings import SettingsError, load_settings


class Inner(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str = "http://x"
    retries: int = 1


class Sample(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    inner: dict[str, Inner] = msgspec.field(default_factory=dict)
    names: list[str] = msgspec.field(default_factory=list)
    enabled: bool = False


PREFIX = "TG_TEST_"


def test_defaults_without_file_or_env() -> None:
    assert load_settings(Sample, env_prefix=PREFIX, environ={}) == Sample()


def test_toml_then_env_override(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[inner.a]\nretries = 3\n')
    env = {
        f"{PREFIX}CONFIG": str(config),
        f"{PREFIX}SERVER__PORT": "9100",
        f"{PREFIX}INNER__A__URL": "http://a",
        f"{PREFIX}ENABLED": "true",
        f"{PREFIX}NAMES": '["x", "y"]',
        "UNRELATED": "1",
    }
    settings = load_settings(Sample, env_prefix=PREFIX, environ=env)
    assert settings.server.port == 9100
    assert settings.server.host == "0.0.0.0"
    assert settings.inner["a"] == Inner(url="http://a", retries=3)
    assert settings.enabled is True
    assert settings.names == ["x", "y"]


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[server]\nport = 'x'\n", {}, "invalid setting server.port: Expected `int`"),
        (
            "[server]\nprot = 1\n",
            {},
            "invalid setting server: Object contains unknown field `prot`",
        ),
        ("", {f"{PREFIX}SERVER__PORT": "eighty"}, "invalid setting server.port"),
        ("", {f"{PREFIX}INNER__A__RETRIES": "many"}, "invalid setting inner.a.retries"),
        ("", {f"{PREFIX}TYPO": "1"}, "Object contains unknown field `typo`"),
        ("", {f"{PREFIX}NAMES": "[1,"}, f"invalid JSON in environment variable {PREFIX}NAMES"),
        ("", {f"{PREFIX}SERVER____PORT": "1"}, "empty name segment"),
        ("[server\n", {}, "is not valid TOML"),
    ],
)
def test_invalid_settings_name_the_field(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError) as caught:
        load_settings(Sample, env_prefix=PREFIX, environ={f"{PREFIX}CONFIG": str(config), **env})
    assert message in str(caught.value)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(SettingsError, match=f"config file not found: {missing}"):
        load_settings(Sample, env_prefix=PREFIX, environ={f"{PREFIX}CONFIG": str(missing)})


def test_secrets_dir_files_are_variables_and_the_environment_wins(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / f"{PREFIX}SERVER__HOST").write_text("10.0.0.1\n")  # one trailing newline dropped
    (secrets / f"{PREFIX}INNER__A__URL").write_text("http://from-file\r\n")
    (secrets / f"{PREFIX}SERVER__PORT").write_text("9200")
    (secrets / "OTHER_SERVICE_TOKEN").write_text("not ours")  # another prefix: ignored
    (secrets / "..data").mkdir()  # what a Kubernetes Secret volume also holds
    env = {f"{PREFIX}SECRETS_DIR": str(secrets), f"{PREFIX}SERVER__PORT": "9300"}
    settings = load_settings(Sample, env_prefix=PREFIX, environ=env)
    assert settings.server.host == "10.0.0.1"
    assert settings.inner["a"].url == "http://from-file"
    assert settings.server.port == 9300


def test_secret_file_with_an_unknown_name_fails_like_a_variable(tmp_path: Path) -> None:
    (tmp_path / f"{PREFIX}SERVER__HOTS").write_text("x")
    with pytest.raises(SettingsError, match="server: Object contains unknown field `hots`"):
        load_settings(Sample, env_prefix=PREFIX, environ={f"{PREFIX}SECRETS_DIR": str(tmp_path)})


def test_missing_secrets_dir_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SettingsError, match=f"{PREFIX}SECRETS_DIR {missing}"):
        load_settings(Sample, env_prefix=PREFIX, environ={f"{PREFIX}SECRETS_DIR": str(missing)})
