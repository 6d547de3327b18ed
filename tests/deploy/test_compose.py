"""deploy/compose: the stack validates statically (compose-spec, settings, promtool, wiring).

No Docker engine runs here, so nothing is started: the files are interpolated from .env.example
the way Compose does it, validated by compose-spec (the Rust compose_spec crate), and every
tiergate service's environment is loaded with its real settings type and config file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose, parse_duration

from tiergate_runtime.settings import SettingsError

from .compose_files import (
    COMBOS,
    FILES,
    HERE,
    ROOT,
    SETTINGS,
    InterpolationError,
    env_example,
    filled_env,
    interpolate,
    interpolated,
    merge_into,
    merged,
    one_shot,
    raw,
    required_secrets,
    service_settings,
    tiergate_services,
)

COMPOSE_CLI_VARS = {"COMPOSE_FILE", "COMPOSE_PROFILES"}
OURS = re.compile(
    r"^\$\{TIERGATE_REGISTRY:-ghcr\.io/tiergate\}/([a-z-]+):\$\{TIERGATE_TAG:-latest\}$"
)
PINNED = re.compile(r"^[a-z0-9][a-z0-9./_-]*@sha256:[0-9a-f]{64}$")
OPTIONAL_BLANKS = {
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "HF_TOKEN",
    "OTLP_BACKEND_ENDPOINT",
    "OTLP_BACKEND_AUTHORIZATION",
}  # blank in .env.example and fine blank


# --- 1. compose-spec validation --------------------------------------------------------------


@pytest.mark.parametrize("combo", COMBOS)
def test_compose_spec_accepts_every_combination(combo: str) -> None:
    model = merged(combo)
    compose = PyCompose.from_yaml(yaml.safe_dump(model))
    compose.validate()
    assert set(compose.service_names()) == set(model["services"])
    for file, path in FILES.items():
        assert "version" not in raw(file), f"{path}: the Compose Specification has no version"
        alone = PyCompose.from_yaml(yaml.safe_dump(interpolated(raw(file), filled_env())))
        if file == "base":  # an override names the base's networks: valid only merged (above)
            alone.validate()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["services", "gateway", "helthcheck"], {"test": ["CMD", "true"]}),
        (["services", "gateway", "depends_on", "auth", "condition"], "service_ready"),
        (["services", "gateway", "stop_grace_period"], "75 seconds"),
        (["services", "gateway", "restart"], "sometimes"),
        (["services", "gateway", "networks"], ["internal", "nowhere"]),
    ],
)
def test_compose_spec_rejects_a_broken_variant(path: list[str], value: Any) -> None:
    model = merged("cpu")
    node = model
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(
        ValueError, match=re.escape(path[-1]) if path[-1] != "networks" else "nowhere"
    ):
        PyCompose.from_yaml(yaml.safe_dump(model)).validate()


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("a$$b", {}, "a$b"),
        ("${A}-$A", {"A": "x"}, "x-x"),
        ("${A:-d}|${A-d}", {"A": ""}, "d|"),
        ("${B:-${A}}", {"A": "n"}, "n"),
        ("${A:+yes}${B+no}", {"A": "1"}, "yes"),
        ('[{"k": "${A:-v}"}]', {}, '[{"k": "v"}]'),
    ],
)
def test_interpolation_follows_the_compose_rules(
    text: str, env: dict[str, str], expected: str
) -> None:
    assert interpolate(text, env) == expected


@pytest.mark.parametrize("secret", sorted(required_secrets()))
def test_compose_refuses_without_each_required_secret(secret: str) -> None:
    assert env_example()[secret] == "", f"{secret} must be blank in .env.example (no secret in git)"
    env = {**filled_env(), secret: ""}
    combo = next(c for c, (files, _) in COMBOS.items() if _refs(files) >= {secret})
    with pytest.raises(InterpolationError, match=f"required variable {secret} "):
        merged(combo, env)


def test_blank_variables_are_required_secrets_or_optional() -> None:
    blanks = {name for name, value in env_example().items() if not value}
    assert blanks == required_secrets() | OPTIONAL_BLANKS
    text = "".join((HERE / name).read_text() for name in FILES.values())
    for secret in required_secrets():  # every use refuses, not only the first one Compose meets
        uses = re.findall(rf"\$\{{{secret}(\W\W?)", text)
        assert uses, secret
        assert set(uses) == {":?"}, f"{secret} is used without :? somewhere"


def _refs(files: list[str]) -> set[str]:
    seen: set[str] = set()
    for file in files:
        interpolated(raw(file), filled_env(), seen)
    return seen


# --- 2. environments name real settings --------------------------------------------------------


def _settings_cases() -> list[tuple[str, str]]:
    return [(combo, name) for combo in COMBOS for name in tiergate_services(merged(combo))]


@pytest.mark.parametrize(("combo", "service"), _settings_cases())
def test_environment_loads_with_the_services_settings(combo: str, service: str) -> None:
    image, svc = tiergate_services(merged(combo))[service]
    if service == "mail-sink":  # the auth image running the sink: no settings of its own
        assert svc["command"][1:4] == ["-m", "tiergate_auth.sink", "--host"]
        return
    settings = service_settings(image, svc.get("environment", {}))
    if image != "gpu-llm-engines":  # the images set host 0.0.0.0; the URLs point at services
        assert not re.search(r"127\.0\.0\.1|localhost", str(svc.get("environment", {})))
    if service == "gateway":  # the published port: /metrics only on an internal one
        assert settings.server.metrics_port is not None
        assert settings.server.metrics_port != settings.server.port
    else:  # not published: /metrics on the service port (scraped below)
        assert settings.server.metrics_port is None


@pytest.mark.parametrize("service", ["gateway", "auth", "rag", "cpu-llm", "gpu-llm"])
def test_a_misspelt_variable_fails(service: str) -> None:
    image, svc = tiergate_services(merged("all"))[service]
    env = dict(svc["environment"])
    name = next(k for k in env if k.startswith(SETTINGS[image][1]))
    env[name + "X"] = env.pop(name)  # e.g. TIERGATE_RAG_INDEX_DIRX
    with pytest.raises(SettingsError):
        service_settings(image, env)


def test_every_variable_is_documented_both_ways() -> None:
    referenced = _refs(list(FILES))
    documented = set(env_example())
    assert referenced - documented == set(), "used by compose but missing from .env.example"
    assert documented - referenced - COMPOSE_CLI_VARS == set(), "documented but never used"
    for name in env_example():  # no real secret value is committed
        assert not re.fullmatch(r"[0-9a-f]{32,}", env_example()[name]), name


def test_stop_grace_covers_every_drain() -> None:
    services = merged("all")["services"]
    gateway = service_settings("gateway", services["gateway"]["environment"])
    assert (
        parse_duration(services["gateway"]["stop_grace_period"])
        > gateway.server.graceful_shutdown_s
    )
    gpu = service_settings("gpu-llm-engines", services["gpu-llm"]["environment"])
    longest_stop = max(engine.stop_grace_s for engine in gpu.engines.values())
    assert (
        parse_duration(services["gpu-llm"]["stop_grace_period"]) > gpu.policy.drain_s + longest_stop
    )
    # the engines run the command lines of config/gpu-llm.toml, SGLang's from its own venv
    assert not any("COMMAND" in k for k in services["gpu-llm"]["environment"])
    assert gpu.engines["mistral"].env["PATH"].startswith("/opt/sglang/bin:")
    assert "uv venv --python 3.12 /opt/sglang" in (HERE / "gpu-llm-engines.Dockerfile").read_text()


# --- 3. wiring: health, read-only, pins, GPUs, Prometheus, the collector -------------------------


@pytest.mark.parametrize("combo", COMBOS)
def test_every_dependency_is_waited_for_by_health(combo: str) -> None:
    """Long-running services are waited for until healthy, one-shots until they exit 0."""
    services = merged(combo)["services"]
    for name, svc in services.items():
        for target, how in svc.get("depends_on", {}).items():
            assert target in services, f"{name} depends on {target}, absent in {combo}"
            if one_shot(services[target]):
                assert how == {"condition": "service_completed_successfully"}, (name, target)
                continue
            assert how == {"condition": "service_healthy"}, (name, target)
            assert "test" in services[target].get("healthcheck", {}), f"{target} has no healthcheck"
        assert one_shot(svc) or svc.get("restart") == "unless-stopped", name
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(limits), f"{name} has no resource limits"
        if "ports" in svc:
            assert name == "gateway" or all(p.startswith("127.0.0.1:") for p in svc["ports"]), name


def test_overrides_only_add_services_and_environment() -> None:
    base = raw("base")["services"]
    for file in ("gpu", "observability"):
        for name, svc in raw(file)["services"].items():
            if name in base:
                assert set(svc) == {"environment"}, f"{FILES[file]} changes {name} beyond env"
            else:
                assert svc["profiles"] == [file], f"{name} in {FILES[file]} needs profile {file}"


def test_tiergate_services_are_read_only_or_say_why() -> None:
    for file, path in FILES.items():
        text = (HERE / path).read_text()
        for name, (_, svc) in tiergate_services(interpolated(raw(file), filled_env())).items():
            block = re.search(rf"(?ms)^  {re.escape(name)}:\n(.*?)(?=^  \S|\Z)", text)
            assert block is not None
            if svc.get("read_only") is not True:
                assert "# not read_only:" in block.group(1), f"{name}: read_only or a reason"
            else:
                assert any(str(t).split(":")[0] == "/tmp" for t in svc.get("tmpfs", [])), name


def test_every_image_is_pinned() -> None:
    for file in FILES:
        for name, svc in raw(file)["services"].items():
            if file != "base" and name in raw("base")["services"]:
                continue  # an override's environment for a base service (checked above)
            image = svc["image"]
            ours = OURS.match(image)
            assert PINNED.match(image) or ours, f"{name}: {image} is neither ours nor by digest"
            if ours:
                assert ours.group(1) in SETTINGS, f"{name}: unknown tiergate image {image}"
    dockerfile = (HERE / "gpu-llm-engines.Dockerfile").read_text()
    froms = re.findall(r"^(?:FROM\s+|ARG VLLM_IMAGE=)(\S+)", dockerfile, re.M)
    assert froms, "no FROM found"
    assert all(PINNED.match(f) for f in froms if not f.startswith("$")), froms
    lint = subprocess.run(
        [str(ROOT / ".venv/bin/hadolint"), str(HERE / "gpu-llm-engines.Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.M):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the build context"


def test_gpu_services_reserve_the_gpu() -> None:
    gpu = {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    for name, svc in merged("all")["services"].items():
        devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        assert devices == ([gpu] if "gpu" in svc.get("profiles", []) else None), name


def _prometheus() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((HERE / "prometheus.yml").read_text())
    return loaded


def test_promtool_accepts_the_config_with_the_rules(tmp_path: Path) -> None:
    config = _prometheus()
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    mounts = merged("observability")["services"]["prometheus"]["volumes"]
    assert "../observability/rules:/etc/prometheus/rules:ro" in mounts
    rules = tmp_path / "rules"  # the mount, reproduced: promtool resolves the glob and checks them
    rules.mkdir()
    for rule_file in (ROOT / "deploy/observability/rules").glob("*.yml"):
        shutil.copy(rule_file, rules)
    config["rule_files"] = [str(rules / "*.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    check = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout + check.stderr


def test_prometheus_scrapes_every_service_with_metrics() -> None:
    targets = set()
    for job in _prometheus()["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets |= set(static["targets"])
        for dns in job.get("dns_sd_configs", []):
            targets |= {f"{host}:{dns['port']}" for host in dns["names"]}
    services = merged("all")["services"]
    labelled = {
        f"{n}:{s['labels']['io.tiergate.metrics-port']}"
        for n, s in services.items()
        if "io.tiergate.metrics-port" in s.get("labels", {})
    }
    assert targets == labelled
    for name, (image, svc) in tiergate_services(merged("all")).items():
        if name == "mail-sink" or one_shot(svc):  # no server, nothing to scrape
            continue
        server = service_settings(image, svc.get("environment", {})).server
        port = server.metrics_port if server.metrics_port is not None else server.port
        assert svc["labels"]["io.tiergate.metrics-port"] == str(port), name


@pytest.mark.parametrize("backend", ["none", "otlp"])
def test_the_collector_pipeline_is_wired(backend: str) -> None:
    config: dict[str, Any] = yaml.safe_load((HERE / "otel-collector.yaml").read_text())
    overlay = yaml.safe_load((HERE / f"otel-collector.backend-{backend}.yaml").read_text())
    merge_into(config, overlay)  # the collector merges maps and replaces lists, as merge_into does
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for pipeline in config["service"]["pipelines"].values():
        for kind, names in used.items():
            names |= set(pipeline.get(kind, []))
    for kind, names in used.items():
        assert names == set(config.get(kind) or {}), f"{kind}: defined vs used differ"
    assert "batch" in used["processors"]
    assert "debug" in used["exporters"]
    services = merged("observability", {**filled_env(), "OTELCOL_BACKEND": backend})["services"]
    collector = services["otel-collector"]
    for flag in collector["command"]:
        mounted = flag.removeprefix("--config=")
        source = next(v.split(":")[0] for v in collector["volumes"] if f":{mounted}:" in v)
        assert (HERE / source).is_file(), source
    for name in re.findall(r"\$\{env:([A-Z_]+)\}", yaml.safe_dump(overlay)):
        assert name in collector["environment"], name
    tracing = services["gateway"]["environment"]
    assert tracing["TIERGATE_GATEWAY_TRACING__ENABLED"] == "true"
    assert (
        tracing["TIERGATE_GATEWAY_TRACING__OTLP_ENDPOINT"] == "http://otel-collector:4318/v1/traces"
    )
