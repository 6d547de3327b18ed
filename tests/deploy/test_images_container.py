"""deploy/images: what the container does, read from its final stage. It runs as the numeric
non-root user, its CMD is the service's own entry point, its HEALTHCHECK asks /healthz on the
port it exposes, its ENV names real settings (loaded with the service's own settings type and
the baked config, so a typo fails), it writes only where the README says it may (read-only
root filesystem), and the rag corpus and cpu-llm's models are baked where the config finds
them."""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path

import pytest

from tiergate_runtime.settings import SettingsError, load_settings

from .dockerfiles import (
    IMAGES,
    ROOT,
    SERVICES,
    VARIANTS,
    final_env,
    final_values,
    load_baked,
    module_of,
    settings_module,
    stages,
)

WRITABLE = {
    "gateway": ["/tmp"],
    "auth": ["/tmp"],
    "rag": ["/tmp", "/var/lib/tiergate/rag"],
    "cpu-llm": ["/tmp"],
    "gpu-llm": ["/tmp"],
}
"""What each container may write (read-only root filesystem); the README's table says the same."""
ALLOWED_PLAIN_ENV = {"PATH", "HOME", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_runs_as_the_numeric_non_root_user(service: str) -> None:
    users = final_values(stages(service), "USER")
    assert users, f"{service}: no USER: the container would run as root"
    assert users[-1] == "10001:10001", "numeric, so that runAsNonRoot can verify it"


@pytest.mark.parametrize("service", SERVICES)
def test_cmd_runs_the_services_own_entry_point(service: str) -> None:
    module = module_of(service)
    assert (ROOT / "services" / service / "src" / module / "__main__.py").is_file()
    cmd = json.loads(final_values(stages(service), "CMD")[-1])
    assert cmd == ["/app/.venv/bin/python", "-m", module]
    assert stages(service)[-1].env["PATH"].startswith("/app/.venv/bin:")


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck_asks_healthz_on_the_exposed_port(service: str) -> None:
    found = stages(service)
    checks = final_values(found, "HEALTHCHECK")
    assert checks, f"{service}: no HEALTHCHECK"
    words = shlex.split(checks[-1])
    command = json.loads(checks[-1][checks[-1].index("CMD") + 3 :])
    assert words[0].startswith("--")
    assert command[0] == "/app/.venv/bin/python"
    urls = re.findall(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", command[-1])
    assert urls, command
    assert urls[0][1] == "/healthz", command
    exposed = [int(p.split("/")[0]) for v in final_values(found, "EXPOSE") for p in v.split()]
    port = load_baked(service).server.port
    assert exposed == [port], (exposed, port)
    assert int(urls[0][0]) == port, (urls, port)


@pytest.mark.parametrize(("service", "build_args"), VARIANTS)
def test_image_env_names_real_settings(service: str, build_args: dict[str, str]) -> None:
    env = final_env(stages(service, build_args))
    prefix = settings_module(service).ENV_PREFIX
    for name in env:
        assert name in ALLOWED_PLAIN_ENV or name.startswith(prefix), f"{service}: ENV {name}?"
    assert env[f"{prefix}SERVER__HOST"] == "0.0.0.0"
    assert env[f"{prefix}CONFIG"] == f"/etc/tiergate/{service}.toml"
    load_baked(service, build_args)  # raises SettingsError on a name that is no setting


def test_the_env_check_fails_on_a_typo() -> None:
    """The check above is only worth something if a misspelt setting fails it."""
    module = settings_module("gateway")
    env = {**final_env(stages("gateway")), "TIERGATE_GATEWAY_SERVER__HOTS": "0.0.0.0"}
    with pytest.raises(SettingsError, match="hots"):
        load_settings(
            module.GatewaySettings,
            env_prefix=module.ENV_PREFIX,
            environ=env,
            config_path=ROOT / "config/gateway.toml",
        )


@pytest.mark.parametrize(("service", "build_args"), VARIANTS)
def test_writes_land_in_the_declared_writable_paths(
    service: str, build_args: dict[str, str]
) -> None:
    settings = load_baked(service, build_args)
    writable = WRITABLE[service]
    written = [settings.server.port_file, settings.server.metrics_port_file]
    if service == "rag":
        written.append(settings.index_dir)
        assert final_values(stages(service), "VOLUME") == ['["/var/lib/tiergate/rag"]']
    for path in filter(None, written):
        assert any(Path(path).is_relative_to(w) for w in writable), (service, path)
    if service == "cpu-llm":  # baked at build time, read at start: never written there
        assert settings.engine.cache_dir == settings.embedding.cache_dir
        assert settings.engine.cache_dir == "/var/cache/tiergate/models"
    readme = (IMAGES / "README.md").read_text()
    section = readme[readme.index("## Read-only root filesystem") :].split("\n## ")[0]
    row = next(line for line in section.splitlines() if line.startswith(f"| {service} |"))
    for path in writable:
        assert f"`{path}`" in row, f"README's writable paths for {service} lack {path}"


def test_rag_bakes_its_default_corpus_where_the_config_finds_it() -> None:
    settings = load_baked("rag")
    copied = {shlex.split(v)[-1] for v in final_values(stages("rag"), "COPY")}
    for entry in settings.corpus:
        target = entry if entry.startswith("/") else f"/app/{entry}"
        assert target in copied, f"corpus entry {entry} is not in the image"


def test_cpu_llm_bakes_the_catalogs_default_model() -> None:
    catalog = importlib.import_module(module_of("cpu-llm") + ".model_catalog")
    found = stages("cpu-llm")
    assert found[-1].base == "model-packaged"
    packaged = next(s for s in found if s.name == "model-packaged")
    assert packaged.args["TIERGATE_MODEL"] == catalog.DEFAULT_MODEL
    assert load_baked("cpu-llm").engine.model == catalog.DEFAULT_MODEL
    bakes = [v for v in found[-1].all("RUN") if "cpu_llm_bake.py" in v]
    assert bakes, "the models are not baked"
    assert "/app/.venv/bin/python" in bakes[0]
    custom = load_baked("cpu-llm", {"MODEL_SOURCE": "file", "MODEL_ID": "my-model"}).engine
    copied = {
        shlex.split(v)[-1]
        for v in final_values(stages("cpu-llm", {"MODEL_SOURCE": "file"}), "COPY")
    }
    assert custom.model_path in copied
    assert custom.model_id == "my-model"
