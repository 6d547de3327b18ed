"""deploy/k8s: kustomize renders each overlay, every object passes its schema, semantics hold."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tiergate_auth import settings as auth_settings
from tiergate_cpu_llm.settings import CpuLlmSettings
from tiergate_gateway import settings as gateway_settings
from tiergate_gpu_llm import settings as gpu_settings
from tiergate_rag.settings import RagSettings
from tiergate_runtime.settings import load_settings

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TARGETS = ["base", "overlays/dev", "overlays/prod", "overlays/prod-gpu-box"]
OVERLAYS = TARGETS[1:]
PROD = ["overlays/prod", "overlays/prod-gpu-box"]
K8S_VERSIONS = ["1.31.0", "1.37.0"]  # the oldest supported and the newest bundled
SECRET = "tiergate-secrets"  # created by the operator (README), never rendered
SECRET_PLACEHOLDERS = {  # every key the manifests may read, with a value of the right shape
    "pepper": "p" * 40,
    "internal-token": "i" * 40,
    "admin-token": "a" * 40,
    "gpu-admin-token": "g" * 40,
    "redis-url": "redis://redis:6379/0",
    "smtp-username": "tiergate",
    "smtp-password": "secret",
    "auth-signing-key": "(PEM)",
    "hf-token": "hf_x",
}
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
EXTRA_ENV = {"gpu-llm": {"HF_HOME", "HF_TOKEN", "HOME"}}  # read by the engines, not settings


def _gateway(env: Mapping[str, str]) -> Any:
    return gateway_settings.load(env)


def _auth(env: Mapping[str, str]) -> Any:
    return auth_settings.load(env)


def _gpu(env: Mapping[str, str]) -> Any:
    return gpu_settings.load(env)


def _rag(env: Mapping[str, str]) -> Any:
    return load_settings(RagSettings, env_prefix="TIERGATE_RAG_", environ=env)


def _cpu(env: Mapping[str, str]) -> Any:
    return load_settings(CpuLlmSettings, env_prefix="TIERGATE_CPU_LLM_", environ=env)


LOADERS: dict[str, tuple[str, Callable[[Mapping[str, str]], Any]]] = {
    "gateway": ("TIERGATE_GATEWAY_", _gateway),
    "auth": ("TIERGATE_AUTH_", _auth),
    "rag": ("TIERGATE_RAG_", _rag),
    "cpu-llm": ("TIERGATE_CPU_LLM_", _cpu),
    "gpu-llm": ("TIERGATE_GPU_LLM_", _gpu),
}


@functools.cache
def render(target: str) -> tuple[Obj, ...]:
    """`kubectl kustomize` of a target, as objects."""
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S / target)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {target} failed:\n{done.stderr}"
    return tuple(obj for obj in yaml.safe_load_all(done.stdout) if obj)


def of_kind(objs: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [obj for obj in objs if obj["kind"] == kind]


def named(objs: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [obj for obj in of_kind(objs, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workloads(objs: tuple[Obj, ...]) -> list[Obj]:
    return [o for o in objs if o["kind"] in {"Deployment", "StatefulSet"}]


def containers(objs: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    for work in workloads(objs):
        for container in work["spec"]["template"]["spec"]["containers"]:
            yield work, container


def subset(wanted: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in (wanted or {}).items())


# --- 1. rendering and schemas -----------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_renders(target: str) -> None:
    objs = render(target)
    assert objs
    for obj in objs:
        assert obj["apiVersion"]
        assert obj["kind"]
        assert obj["metadata"]["name"]


def _closed(node: Any) -> Any:
    """A CRD schema as the API server's strict field validation reads it: unknown fields fail."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _closed(value) for key, value in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) → the vendored openAPIV3Schema (deploy/k8s/schemas)."""
    schemas = {}
    for path in sorted((K8S / "schemas").glob("*.json")):
        doc = json.loads(path.read_text())
        schemas[(f"{doc['group']}/{doc['version']}", doc["kind"])] = _closed(doc["schema"])
    assert len(schemas) == 4, schemas.keys()
    return schemas


def schema_errors(obj: Obj, version: str) -> list[str]:
    """Why `obj` fails its schema (empty: valid); an unknown kind fails."""
    crd = crd_schemas().get((obj["apiVersion"], obj["kind"]))
    if crd is not None:
        validator = jsonschema.Draft202012Validator(crd)
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]
    try:
        used = kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {obj['apiVersion']} {obj['kind']} (unknown kind)"]
    except kubernetes_validate.ValidationError as exc:
        return [f"{list(exc.absolute_path)}: {exc.message}"]
    return [] if used == version.rsplit(".", 1)[0] else [f"validated against {used}"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_every_object_validates(target: str, version: str) -> None:
    problems = {
        f"{obj['kind']}/{obj['metadata']['name']}": errors
        for obj in render(target)
        if (errors := schema_errors(obj, version))
    }
    assert not problems, problems


# --- 2. settings: every environment names real settings ---------------------------------


def env_of(objs: tuple[Obj, ...], container: Obj) -> dict[str, str]:
    """The container's environment, Secrets replaced by placeholders of the right shape."""
    maps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in of_kind(objs, "ConfigMap")}
    env: dict[str, str] = {}
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            assert ref["name"] == SECRET, f"{var['name']}: unknown Secret {ref['name']}"
            assert ref["key"] in SECRET_PLACEHOLDERS, f"{var['name']}: undocumented key"
            env[var["name"]] = SECRET_PLACEHOLDERS[ref["key"]]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            assert ref["key"] in maps.get(ref["name"], {}), f"{var['name']}: no {ref}"
            env[var["name"]] = maps[ref["name"]][ref["key"]]
        else:
            raise AssertionError(f"{var['name']}: unexpected source {source}")
    assert not container.get("envFrom"), "envFrom hides which settings are set"
    return env


def service_of(container: Obj) -> str | None:
    """Which of our services the container runs (None: a third-party image or a tool)."""
    match = re.fullmatch(r"ghcr\.io/tiergate/([a-z-]+?)(-engines)?:.+", container["image"])
    if match is None or container.get("command"):
        return None
    return match.group(1)


def settings_of(
    objs: tuple[Obj, ...], work: Obj, container: Obj, tmp_path: Path
) -> tuple[str, Any]:
    """Load the container's settings the way the service does: its config file (from the
    ConfigMap mounted where `<PREFIX>CONFIG` points) and its environment."""
    service = service_of(container)
    assert service in LOADERS, container["image"]
    prefix, loader = LOADERS[service]
    env = env_of(objs, container)
    unknown = {n for n in env if not n.startswith(prefix)} - EXTRA_ENV.get(service, set())
    assert not unknown, f"{service}: variables no setting reads: {unknown}"
    config = env[f"{prefix}CONFIG"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == config)
    volumes = work["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == mount["name"])
    configmap = named(objs, "ConfigMap", volume["configMap"]["name"])
    assert mount["subPath"] == f"{service}.toml"
    path = tmp_path / f"{service}.toml"
    path.write_text(configmap["data"][mount["subPath"]])
    return service, loader({**env, f"{prefix}CONFIG": str(path)})


@pytest.mark.parametrize("target", TARGETS)
def test_environments_name_real_settings(target: str, tmp_path: Path) -> None:
    objs = render(target)
    loaded = set()
    for work, container in containers(objs):
        if service_of(container) is not None:
            loaded.add(settings_of(objs, work, container, tmp_path)[0])
        elif container["image"].startswith("ghcr.io/tiergate/"):
            assert not container.get("env"), f"{container['name']}: a tool reads no settings"
    assert {"gateway", "auth", "rag", "cpu-llm"} <= loaded


def test_a_misspelt_setting_fails(tmp_path: Path) -> None:
    """The check above is real: one wrong letter in a variable's name fails the load."""
    objs = render("overlays/prod")
    work = named(objs, "Deployment", "gateway")
    container = json.loads(json.dumps(work["spec"]["template"]["spec"]["containers"][0]))
    container["env"].append({"name": "TIERGATE_GATEWAY_RAG__URLL", "value": "http://rag:8082"})
    with pytest.raises(Exception, match=r"rag\.urll|urll"):
        settings_of(objs, work, container, tmp_path)


# --- 3. semantics the schemas cannot check -----------------------------------------------


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


def pod_templates(objs: tuple[Obj, ...], namespace: str | None) -> list[Obj]:
    return [
        w["spec"]["template"]
        for w in workloads(objs)
        if w["metadata"].get("namespace") == namespace
    ]


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
def test_references_resolve(target: str) -> None:
    """ConfigMaps are rendered; Secrets are only the documented external one, never inlined."""
    objs = render(target)
    assert not of_kind(objs, "Secret"), "a Secret in the manifests"
    configmaps = {cm["metadata"]["name"] for cm in of_kind(objs, "ConfigMap")}
    readme = (K8S / "README.md").read_text()
    for work, container in containers(objs):
        env_of(objs, container)  # asserts every secretKeyRef / configMapKeyRef
        for volume in work["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, volume
            if "secret" in volume:
                assert volume["secret"]["secretName"] == SECRET, volume
                for item in volume["secret"]["items"]:
                    assert item["key"] in SECRET_PLACEHOLDERS, item
    for key in SECRET_PLACEHOLDERS:
        assert f"--from-literal={key}=" in readme or f"--from-file={key}=" in readme, key


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


def pinned(image: str) -> bool:
    if image.startswith("ghcr.io/tiergate/"):
        return re.fullmatch(r"ghcr\.io/tiergate/[a-z-]+:\d+\.\d+\.\d+\S*", image) is not None
    return re.search(r"(@sha256:[0-9a-f]{64}|:v?\d+\.\d+\.\d+[\w.-]*)$", image) is not None


@pytest.mark.parametrize("target", TARGETS)
def test_images_are_pinned(target: str) -> None:
    images = {container["image"] for _, container in containers(render(target))}
    for image in images:
        assert pinned(image), image
    ours = {image.split(":")[-1] for image in images if image.startswith("ghcr.io/tiergate/")}
    assert len(ours) == 1, f"one release, one tag: {ours}"
    for source in K8S.rglob("*.yaml"):  # our tags come from kustomize `images:` only
        assert not re.search(r"image: ghcr\.io/tiergate/\S+:", source.read_text()), source


def test_pinning_rejects_floating_tags() -> None:
    assert not pinned("redis:7.4")
    assert not pinned("vllm/vllm-openai:latest")
    assert not pinned("ghcr.io/tiergate/gateway")
    assert not pinned("ghcr.io/tiergate/gateway:latest")


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
