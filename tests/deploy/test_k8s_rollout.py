"""deploy/k8s: availability while pods come and go. The gateway rolls without dropping a
request (probes on its port, drain time within the grace period), cpu-llm gets the CPUs and
startup time its engines need, every workload with more than one replica has a disruption
budget, the gateway is evicted last, and it autoscales (HPA in base/dev, KEDA in prod)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .k8s_manifests import (
    OVERLAYS,
    TARGETS,
    Obj,
    named,
    of_kind,
    render,
    settings_of,
    subset,
    workloads,
)

PROD = ["overlays/prod", "overlays/prod-gpu-box"]


def probe_port(container: Obj, probe: Obj) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == port))


@pytest.mark.parametrize("target", OVERLAYS)
def test_gateway_rolls_without_dropping_requests(target: str, tmp_path: Path) -> None:
    objs = render(target)
    work = named(objs, "Deployment", "gateway")
    spec, pod = work["spec"], work["spec"]["template"]["spec"]
    container = pod["containers"][0]
    settings = settings_of(objs, work, container, tmp_path)[1]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert probe_port(container, container[probe]) == settings.server.port
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > settings.server.graceful_shutdown_s + pre_stop
    assert settings.server.graceful_shutdown_s >= 120, "streams need minutes to drain"


@pytest.mark.parametrize("target", OVERLAYS)
def test_cpu_llm_is_sized_to_its_engines(target: str, tmp_path: Path) -> None:
    objs = render(target)
    work = named(objs, "Deployment", "cpu-llm")
    container = work["spec"]["template"]["spec"]["containers"][0]
    settings = settings_of(objs, work, container, tmp_path)[1]
    threads = settings.engine.threads + settings.embedding.threads
    assert float(container["resources"]["requests"]["cpu"]) >= threads
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/readyz"
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= settings.engine.ready_timeout_s


@pytest.mark.parametrize("target", TARGETS)
def test_disruption_budgets_where_replicas_exceed_one(target: str) -> None:
    objs = render(target)
    budgets = of_kind(objs, "PodDisruptionBudget")
    for work in workloads(objs):
        labels = work["spec"]["template"]["metadata"]["labels"]
        covered = [b for b in budgets if subset(b["spec"]["selector"]["matchLabels"], labels)]
        assert bool(covered) == (work["spec"].get("replicas", 1) > 1), work["metadata"]["name"]
    for budget in budgets:
        assert any(
            subset(
                budget["spec"]["selector"]["matchLabels"],
                w["spec"]["template"]["metadata"]["labels"],
            )
            for w in workloads(objs)
        )


@pytest.mark.parametrize("target", TARGETS)
def test_gateway_is_evicted_last(target: str) -> None:
    objs = render(target)
    values = {p["metadata"]["name"]: p["value"] for p in of_kind(objs, "PriorityClass")}
    gateway = named(objs, "Deployment", "gateway")["spec"]["template"]["spec"]
    top = values[gateway["priorityClassName"]]
    for work in workloads(objs):
        pod = work["spec"]["template"]["spec"]
        if work["metadata"]["name"] != "gateway":
            assert values.get(pod.get("priorityClassName"), 0) < top, work["metadata"]["name"]


@pytest.mark.parametrize("target", TARGETS)
def test_gateway_autoscaling(target: str) -> None:
    objs = render(target)
    hpas = [
        h
        for h in of_kind(objs, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == "gateway"
    ]
    scaled = of_kind(objs, "ScaledObject")
    if target not in PROD:
        assert len(hpas) == 1
        assert not scaled
        assert hpas[0]["spec"]["minReplicas"] >= 2
        assert hpas[0]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        return
    assert not hpas, "KEDA owns the gateway's HPA in prod"
    spec = named(objs, "ScaledObject", "gateway")["spec"]
    assert spec["scaleTargetRef"]["name"] == "gateway"
    assert spec["minReplicaCount"] >= 2
    triggers = {t["type"]: t["metadata"] for t in spec["triggers"]}
    assert set(triggers) == {"cpu", "prometheus"}
    query = triggers["prometheus"]["query"]
    namespace = named(objs, "Deployment", "gateway")["metadata"]["namespace"]
    assert "tiergate_gateway_in_flight_requests{" in query
    assert f'namespace="{namespace}"' in query
