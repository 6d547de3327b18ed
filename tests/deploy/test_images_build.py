"""deploy/images: what a build needs, checked before any build runs. COPY sources exist and
are not excluded by .dockerignore (which keeps local state out of the context), every base is
a stage or pinned by digest, `uv sync` installs the image's own member with the sources of the
members it depends on, and build.sh (run against a stub `docker` that records its arguments)
builds all five with one tag and bakes a model file into cpu-llm only."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from .dockerfiles import (
    IMAGES,
    ROOT,
    SERVICES,
    VARIANTS,
    Stage,
    dockerignore_excludes,
    member,
    stages,
)

DIGEST = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")


# --- what a build needs -------------------------------------------------------------------------


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
            files = [p for p in (ROOT / source).rglob("*") if p.is_file()]
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
    # web/dist is built by `make setup` before the tests; the script's own npm step is
    # scripts/web-build.sh (what bootstrap runs), not what this test is about.
    environ = {
        **os.environ,
        "PATH": f"{stub.parent}:{os.environ['PATH']}",
        "TIERGATE_SKIP_WEB_BUILD": "1",
        **env,
    }
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
