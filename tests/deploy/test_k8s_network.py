"""deploy/k8s: who reaches whom. Every Service selects pods with the port it targets, every
ServiceMonitor scrapes a Service (and every metrics port has one), the gateway's egress
NetworkPolicy admits exactly its backends (read from its loaded settings) and nothing wider,
and only the ingress controller reaches the gateway's serving port."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

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

# Endpoints outside the rendered objects: (namespace labels, pod labels, pod port). The
# interceptor's labels are those of kedacore/http-add-on v0.15.0 config/interceptor.
EXTERNAL = {
    "otel-collector.monitoring.svc": (
        {"kubernetes.io/metadata.name": "monitoring"},
        {"app.kubernetes.io/name": "opentelemetry-collector"},
        4318,
    ),
    "keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local": (
        {"kubernetes.io/metadata.name": "keda"},
        {
            "app.kubernetes.io/component": "add-on",
            "app.kubernetes.io/instance": "interceptor",
            "app.kubernetes.io/name": "http",
            "app.kubernetes.io/part-of": "keda",
        },
        8080,
    ),
}
DNS = ({"kubernetes.io/metadata.name": "kube-system"}, {"k8s-app": "kube-dns"}, 53)


def pod_templates(objs: tuple[Obj, ...], namespace: str | None) -> list[Obj]:
    return [
        w["spec"]["template"]
        for w in workloads(objs)
        if w["metadata"].get("namespace") == namespace
    ]


# --- Services and ServiceMonitors ---------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_service_reaches_pods(target: str) -> None:
    objs = render(target)
    slices = {
        s["metadata"]["labels"]["kubernetes.io/service-name"]
        for s in of_kind(objs, "EndpointSlice")
    }
    for service in of_kind(objs, "Service"):
        spec, name = service["spec"], service["metadata"]["name"]
        if "selector" not in spec:
            assert spec.get("type") == "ExternalName" or name in slices, name
            continue
        pods = [
            t
            for t in pod_templates(objs, service["metadata"].get("namespace"))
            if subset(spec["selector"], t["metadata"]["labels"])
        ]
        assert pods, f"Service {name} selects no pod template"
        for port in spec["ports"]:
            names = {
                p.get("name")
                for t in pods
                for c in t["spec"]["containers"]
                for p in c.get("ports", [])
            }
            numbers = {
                p["containerPort"]
                for t in pods
                for c in t["spec"]["containers"]
                for p in c.get("ports", [])
            }
            assert port["targetPort"] in names | numbers, f"{name}: {port}"


@pytest.mark.parametrize("target", TARGETS)
def test_service_monitors_scrape_every_service(target: str) -> None:
    objs = render(target)
    monitors = of_kind(objs, "ServiceMonitor")
    for service in of_kind(objs, "Service"):
        ports = {p["name"] for p in service["spec"]["ports"]}
        if "metrics" in ports:
            assert any(
                subset(m["spec"]["selector"]["matchLabels"], service["metadata"].get("labels", {}))
                for m in monitors
            ), service["metadata"]["name"]
    for monitor in monitors:
        selected = [
            s
            for s in of_kind(objs, "Service")
            if subset(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))
        ]
        assert any(
            e["port"] in {p.get("name") for s in selected for p in s["spec"]["ports"]}
            for e in monitor["spec"]["endpoints"]
        ), monitor["metadata"]["name"]


# --- NetworkPolicies ------------------------------------------------------------------------


def policies_for(objs: tuple[Obj, ...], app: str, kind: str) -> list[Obj]:
    return [
        p
        for p in of_kind(objs, "NetworkPolicy")
        if kind in p["spec"]["policyTypes"]
        and subset(p["spec"]["podSelector"].get("matchLabels"), {"app.kubernetes.io/name": app})
    ]


Target = tuple[str, Any, Any, int]  # ("pods", ns labels, pod labels, port) | ("ip", addr, -, port)


def targets_of(objs: tuple[Obj, ...], namespace: str, url: str) -> list[Target]:
    """Where a URL the gateway calls lands: pod labels and pod port, or addresses."""
    authority = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port_text = authority.partition(":")
    port = int(port_text or ("443" if url.startswith("https") else "80"))
    if host in EXTERNAL:
        ns_labels, labels, pod_port = EXTERNAL[host]
        return [("pods", ns_labels, labels, pod_port)]
    name = host.split(".")[0]
    service = named(objs, "Service", name)
    spec = service["spec"]
    if spec.get("type") == "ExternalName":
        return targets_of(objs, namespace, f"http://{spec['externalName']}:{port}")
    entry = next(p for p in spec["ports"] if p["port"] == port)
    if "selector" not in spec:
        return [
            ("ip", address, None, entry["targetPort"])
            for s in of_kind(objs, "EndpointSlice")
            if s["metadata"]["labels"]["kubernetes.io/service-name"] == name
            for e in s["endpoints"]
            for address in e["addresses"]
        ]
    template = next(
        t
        for t in pod_templates(objs, namespace)
        if subset(spec["selector"], t["metadata"]["labels"])
    )
    target_port = entry["targetPort"]
    if isinstance(target_port, str):
        target_port = next(
            p["containerPort"]
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
            if p.get("name") == target_port
        )
    own = {"kubernetes.io/metadata.name": namespace}
    return [("pods", own, template["metadata"]["labels"], target_port)]


def peer_matches(peer: Obj, target: Target, namespace: str) -> bool:
    if "ipBlock" in peer:
        return target[0] == "ip" and ipaddress.ip_address(target[1]) in ipaddress.ip_network(
            peer["ipBlock"]["cidr"]
        )
    if target[0] != "pods":
        return False
    own = {"kubernetes.io/metadata.name": namespace}
    ns_ok = (
        subset(peer["namespaceSelector"].get("matchLabels"), target[1])
        if ("namespaceSelector" in peer)
        else target[1] == own
    )
    return ns_ok and subset(peer.get("podSelector", {}).get("matchLabels"), target[2])


@pytest.mark.parametrize("target", OVERLAYS)
def test_gateway_egress_is_exactly_its_backends(target: str, tmp_path: Path) -> None:
    objs = render(target)
    work = named(objs, "Deployment", "gateway")
    namespace = work["metadata"]["namespace"]
    settings = settings_of(objs, work, work["spec"]["template"]["spec"]["containers"][0], tmp_path)[
        1
    ]
    urls = [settings.auth.url, settings.rag.url, settings.store.url, settings.tracing.otlp_endpoint]
    for backend in settings.backends.values():
        urls += [backend.base_url, backend.health_url, backend.wake and backend.wake.url]
    wanted = [t for url in urls if url for t in targets_of(objs, namespace, url)]
    wanted += [("pods", DNS[0], DNS[1], DNS[2])]
    rules = [r for p in policies_for(objs, "gateway", "Egress") for r in p["spec"]["egress"]]
    for want in wanted:  # every backend is allowed ...
        assert any(
            any(p["port"] == want[3] for p in rule["ports"])
            and any(peer_matches(peer, want, namespace) for peer in rule["to"])
            for rule in rules
        ), f"{target}: the gateway may not reach {want}"
    for rule in rules:  # ... and nothing else is
        for peer in rule["to"]:
            assert not too_wide(objs, peer, namespace, wanted), f"{target}: {peer} is too wide"
            for port in rule["ports"]:
                assert any(
                    port["port"] == w[3] and peer_matches(peer, w, namespace) for w in wanted
                ), f"{target}: egress to {peer}:{port} is no backend"


def too_wide(objs: tuple[Obj, ...], peer: Obj, namespace: str, wanted: list[Target]) -> bool:
    """Whether a peer also admits what no wanted target is: more than one address, any pod
    elsewhere, or a pod of ours that is not a backend."""
    if "ipBlock" in peer:
        return ipaddress.ip_network(peer["ipBlock"]["cidr"]).num_addresses != 1
    pod_labels = peer.get("podSelector", {}).get("matchLabels")
    if "namespaceSelector" in peer:
        return not pod_labels or not peer["namespaceSelector"].get("matchLabels")
    return any(
        subset(pod_labels, t["metadata"]["labels"])
        and not any(w[0] == "pods" and w[2] == t["metadata"]["labels"] for w in wanted)
        for t in pod_templates(objs, namespace)
    )


@pytest.mark.parametrize("target", OVERLAYS)
def test_only_the_ingress_reaches_the_gateway(target: str) -> None:
    objs = render(target)
    rules = [r for p in policies_for(objs, "gateway", "Ingress") for r in p["spec"]["ingress"]]
    by_port = {port["port"]: rule["from"] for rule in rules for port in rule["ports"]}
    assert set(by_port) == {8080, 9091}
    ingress_controller = by_port[8080][0]
    assert ingress_controller["namespaceSelector"]["matchLabels"]
    assert ingress_controller["podSelector"]["matchLabels"]
    assert len(by_port[8080]) == 1
