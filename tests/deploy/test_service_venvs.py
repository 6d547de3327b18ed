"""Each image's builder stage, run without Docker: the files its COPY lines name, and nothing
else, are laid out as the stage's WORKDIR; its own `uv sync` commands build the venv there;
the service is started from that venv with the image's ENV and answers `/healthz`.

This is what the static checks cannot see: a member whose `pyproject.toml` misses a
dependency that another member brings into the shared dev venv, a workspace member's sources
the Dockerfile forgets to copy, an entry point that does not start. Docker itself is not run
(this machine has no engine), so the base image, `apt-get`, the user and the read-only root are
not exercised here; `UV_COMPILE_BYTECODE` and `UV_LINK_MODE` are left to uv's defaults (they
change how the venv is written, not what is in it)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tiergate_testkit.waiting import wait_until

from .dockerfiles import ROOT, Stage, dockerignore_excludes, final_env, module_of, stages

SYNC_TIMEOUT_S = 300


def _uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    assert found, "no uv: run `make setup`"
    return found


def _builder(service: str) -> Stage:
    (builder,) = [s for s in stages(service) if s.name == "builder"]
    return builder


def _copy(source: Path, target: Path) -> None:
    """Docker's COPY of one source: a file to `target`, a directory's contents into it;
    what .dockerignore excludes never reaches the build context."""
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and not dockerignore_excludes(relative):
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


def _lay_out(builder: Stage, workdir: Path) -> None:
    """The builder's COPY lines applied to `workdir` (the stage's WORKDIR is `/app`)."""
    assert builder.all("WORKDIR") == ["/app"]
    for value in builder.all("COPY"):
        *sources, dest = [w for w in shlex.split(value) if not w.startswith("--")]
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: not in the repository"
            into_dir = dest.endswith("/") or len(sources) > 1
            target = workdir / dest / (path.name if into_dir and path.is_file() else "")
            _copy(path, target)


def _sync_commands(builder: Stage) -> list[list[str]]:
    """The builder's `uv sync` RUN lines, without their `--mount` options."""
    commands = []
    for value in builder.all("RUN"):
        words = [w for w in shlex.split(value) if not w.startswith("--mount=")]
        if words[:2] == ["uv", "sync"]:
            commands.append(words)
    return commands


def _build_venv(service: str, tmp_path: Path) -> Path:
    builder = _builder(service)
    workdir = tmp_path / "app"
    _lay_out(builder, workdir)
    commands = _sync_commands(builder)
    assert len(commands) == 2, "a dependency layer, then the member's own sources"
    venv = tmp_path / "venv"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))},
        **{k: v for k, v in builder.env.items() if k.startswith("UV_")},
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_COMPILE_BYTECODE": "0",
    }
    env.pop("UV_LINK_MODE", None)
    python = (
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    )
    for words in commands:
        done = subprocess.run(
            [_uv(), *words[1:], "--python", str(python)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=SYNC_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"{shlex.join(words)} failed:\n{done.stderr[-3000:]}"
    return venv


def _listening_port(port_file: Path, process: subprocess.Popen[bytes]) -> int:
    started = wait_until(lambda: port_file.exists() or process.poll() is not None, 60)
    if not started or not port_file.exists():
        process.kill()
        output, _ = process.communicate(timeout=10)
        pytest.fail(f"did not listen: {output.decode(errors='replace')[-3000:]}")
    return int(port_file.read_text())


def _installed(venv: Path) -> set[str]:
    listed = subprocess.run(
        [_uv(), "pip", "list", "--python", str(venv / "bin" / "python"), "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {line.split("==")[0].lower() for line in listed.stdout.splitlines() if line}


@pytest.mark.parametrize("service", ["gateway", "auth", "rag", "gpu-llm"])
def test_the_builder_stage_builds_a_venv_the_service_starts_from(
    service: str, tmp_path: Path
) -> None:
    venv = _build_venv(service, tmp_path)
    installed = _installed(venv)
    assert f"tiergate-{service}" in installed
    assert not {"pytest", "mypy", "ruff", "tiergate-testkit"} & installed, "dev deps in the image"

    found = stages(service)
    image_env = final_env(found)
    prefix = next(k for k in image_env if k.endswith("_CONFIG")).removesuffix("CONFIG")
    port_file = tmp_path / "port"
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),  # the image's HOME=/tmp: nothing of ours lives there
        **{k: v for k, v in image_env.items() if k.startswith("TIERGATE_")},
        f"{prefix}CONFIG": str(ROOT / "config" / f"{service}.toml"),
        f"{prefix}SERVER__HOST": "127.0.0.1",
        f"{prefix}SERVER__PORT": "0",
        f"{prefix}SERVER__PORT_FILE": str(port_file),
    }
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    if service == "rag":  # the image bakes the corpus at its relative paths under /app
        env[f"{prefix}INDEX_DIR"] = str(tmp_path / "index")
        cwd = ROOT
    process = subprocess.Popen(
        [str(venv / "bin" / "python"), "-m", module_of(service)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        port = _listening_port(port_file, process)
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert answer.status_code == 200
        assert answer.json() == {"status": "ok"}
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    text = output.decode(errors="replace")
    # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 is a clean stop.
    assert process.returncode in {0, -signal.SIGTERM}, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(directory).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_cpu_llm_bakes_its_models_and_then_starts_converting_nothing(tmp_path: Path) -> None:
    """The cpu-llm image's final stage: the bake script with the image's settings, then the
    service from the same venv, whose model cache must not change (it is read-only there)."""
    venv = _build_venv("cpu-llm", tmp_path)
    image_env = final_env(stages("cpu-llm"))
    models = tmp_path / "models"
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        **{k: v for k, v in image_env.items() if k.startswith("TIERGATE_")},
        "TIERGATE_CPU_LLM_CONFIG": str(ROOT / "config" / "cpu-llm.toml"),
        "TIERGATE_CPU_LLM_ENGINE__CACHE_DIR": str(models),
        "TIERGATE_CPU_LLM_EMBEDDING__CACHE_DIR": str(models),
        "TIERGATE_CPU_LLM_ENGINE__THREADS": "1",
        "TIERGATE_CPU_LLM_EMBEDDING__THREADS": "1",
        "TIERGATE_CPU_LLM_ENGINE__SEED": "7",
    }
    assert image_env["TIERGATE_CPU_LLM_ENGINE__CACHE_DIR"] == "/var/cache/tiergate/models"
    python = str(venv / "bin" / "python")
    baked = subprocess.run(
        [python, str(ROOT / "deploy" / "images" / "cpu_llm_bake.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SYNC_TIMEOUT_S,
        check=False,
    )
    assert baked.returncode == 0, baked.stderr[-3000:]
    before = _snapshot(models)
    assert any(name.endswith(".gguf") for name in before), before

    port_file = tmp_path / "port"
    env |= {
        "TIERGATE_CPU_LLM_SERVER__HOST": "127.0.0.1",
        "TIERGATE_CPU_LLM_SERVER__PORT": "0",
        "TIERGATE_CPU_LLM_SERVER__PORT_FILE": str(port_file),
    }
    process = subprocess.Popen(
        [python, "-m", "tiergate_cpu_llm"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        port = _listening_port(port_file, process)
        base = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: _ready(base), 120), "cpu-llm not ready within 120 s"
        answer = httpx.post(
            f"{base}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
    text = output.decode(errors="replace")
    assert process.returncode in {0, -signal.SIGTERM}, text[-3000:]
    assert _snapshot(models) == before, "the service wrote into its baked model cache"


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
