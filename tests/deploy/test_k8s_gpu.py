"""deploy/k8s: the GPU tier. Each GPU workload holds one GPU on a GPU node and is recreated,
not rolled; prod's vLLM runs the very engine gpu-llm.toml describes and KEDA's HTTP add-on
wakes it the way the gateway's settings expect; in prod-gpu-box the gateway wakes the box's
supervisor, which serves the models the gateway routes there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate_gpu_llm import settings as gpu_settings

from .k8s_manifests import (
    OVERLAYS,
    Obj,
    named,
    of_kind,
    render,
    settings_of,
    workloads,
)


def gpu_workloads(objs: tuple[Obj, ...]) -> list[Obj]:
    return [
        work
        for work in workloads(objs)
        for c in work["spec"]["template"]["spec"]["containers"]
        if "nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
    ]


@pytest.mark.parametrize("target", OVERLAYS)
def test_gpu_tier_holds_one_gpu(target: str) -> None:
    objs = render(target)
    found = {work["metadata"]["name"] for work in gpu_workloads(objs)}
    assert found == {"overlays/dev": set(), "overlays/prod": {"vllm-qwen"}}.get(target, {"gpu-llm"})
    for work in gpu_workloads(objs):
        pod = work["spec"]["template"]["spec"]
        assert work["spec"]["strategy"]["type"] == "Recreate"
        assert work["spec"]["replicas"] == (1 if work["metadata"]["name"] == "gpu-llm" else 0)
        assert pod["nodeSelector"]
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        for container in pod["containers"]:
            assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"


def test_vllm_runs_the_engine_of_gpu_llm_toml(tmp_path: Path) -> None:
    objs = render("overlays/prod")
    work = named(objs, "Deployment", "vllm-qwen")
    container = work["spec"]["template"]["spec"]["containers"][0]
    gpu_toml = tmp_path / "gpu-llm.toml"
    config = next(c for c in of_kind(objs, "ConfigMap") if "gpu-llm.toml" in c["data"])
    gpu_toml.write_text(config["data"]["gpu-llm.toml"])
    qwen = gpu_settings.load({"TIERGATE_GPU_LLM_CONFIG": str(gpu_toml)}).engines["qwen"]
    expected = [arg for arg in qwen.command if arg != "--enable-sleep-mode"]
    assert container["command"] + container["args"] == expected
    assert container["ports"][0]["containerPort"] == qwen.port
    gateway = named(objs, "Deployment", "gateway")
    settings = settings_of(
        objs, gateway, gateway["spec"]["template"]["spec"]["containers"][0], tmp_path
    )[1]
    backend = settings.backends["qwen"]
    assert backend.wake.kind == "platform"
    assert backend.wake.model in qwen.models
    scaled = named(objs, "HTTPScaledObject", "vllm-qwen")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "vllm-qwen"
    assert int(scaled["timeouts"]["responseHeader"].rstrip("s")) >= backend.read_timeout_s
    host = backend.base_url.split("/")[2].split(":")[0]
    assert scaled["hosts"] == [host]
    assert backend.wake.url.split("/")[2].startswith(host)


def test_gpu_box_wake_names_the_box(tmp_path: Path) -> None:
    objs = render("overlays/prod-gpu-box")
    gateway = named(objs, "Deployment", "gateway")
    settings = settings_of(
        objs, gateway, gateway["spec"]["template"]["spec"]["containers"][0], tmp_path
    )[1]
    work = named(objs, "Deployment", "gpu-llm")
    box = settings_of(objs, work, work["spec"]["template"]["spec"]["containers"][0], tmp_path)[1]
    served = {model for engine in box.engines.values() for model in engine.models}
    for name in ("qwen", "mistral"):
        wake = settings.backends[name].wake
        assert wake.kind == "supervisor"
        assert wake.box == box.box
        assert wake.token
    assert {m.engine_model for m in settings.models if m.backend in {"qwen", "mistral"}} <= served
