"""deploy/k8s: auth's records database. auth reads the URL from the Secret, never a literal,
and does not migrate itself; its init container `migrate` runs `tiergate db upgrade` with the
same image, config and URL first (and really works so: run here against a real PostgreSQL).
dev's PostgreSQL is pinned, probed over TCP, non-root on a read-only root, its data on a
volume, unpublished, and reached by auth pods only; prod's is external, behind a selector-less
Service.

Each check is a function returning its problems, so that a broken variant is shown to fail it.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tiergate_testkit.postgres import PostgresServer

from .k8s_manifests import (
    K8S,
    ROOT,
    SECRET,
    TARGETS,
    Obj,
    named,
    of_kind,
    render,
    settings_of,
    subset,
    workloads,
)
from .test_k8s_network import peer_matches, policies_for

MIGRATE = ["tiergate", "db", "upgrade"]
URL_VAR = "TIERGATE_AUTH_DATABASE__URL"
AUTH = {"app.kubernetes.io/name": "auth"}
POSTGRES = {"app.kubernetes.io/name": "postgres"}


def env_var(container: Obj, name: str) -> Obj | None:
    return next((v for v in container.get("env", []) if v["name"] == name), None)


def from_secret(container: Obj, name: str, key: str) -> bool:
    var = env_var(container, name)
    ref = (var or {}).get("valueFrom", {}).get("secretKeyRef", {})
    return var is not None and "value" not in var and ref == {"name": SECRET, "key": key}


def auth_problems(objs: tuple[Obj, ...]) -> list[str]:
    """Why auth's pod does not migrate first and then only check (empty: it does)."""
    pod = named(objs, "Deployment", "auth")["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == "auth")
    problems = []
    if not from_secret(server, URL_VAR, "database-url"):
        problems.append(f"auth's {URL_VAR} is not the Secret's database-url")
    upgrade = env_var(server, "TIERGATE_AUTH_DATABASE__UPGRADE_ON_START")
    if upgrade is None or upgrade.get("value") != "false":
        problems.append("auth may migrate at start (the config file's default for make run)")
    inits = pod.get("initContainers", [])
    if [c.get("command") for c in inits] != [MIGRATE]:
        problems.append(f"init containers {[c.get('command') for c in inits]}: want {MIGRATE}")
        return problems
    migrate = inits[0]
    if migrate["image"] != server["image"]:
        problems.append(f"migrate runs {migrate['image']}, auth {server['image']}")
    if not from_secret(migrate, URL_VAR, "database-url"):
        problems.append(f"migrate's {URL_VAR} is not the Secret's database-url")
    config = {m["mountPath"]: m.get("subPath") for m in server["volumeMounts"]}
    mine = {m["mountPath"]: m.get("subPath") for m in migrate.get("volumeMounts", [])}
    if not config.items() & mine.items():
        problems.append("migrate does not mount auth's config")
    if migrate.get("securityContext") != server.get("securityContext"):
        problems.append("migrate is less confined than auth")
    return problems


def postgres_problems(objs: tuple[Obj, ...]) -> list[str]:
    """Why dev's PostgreSQL is not what auth's records need (empty: it is)."""
    sets = [w for w in workloads(objs) if w["metadata"]["name"] == "postgres"]
    if [w["kind"] for w in sets] != ["StatefulSet"]:
        return [f"postgres workloads {[w['kind'] for w in sets]}: want one StatefulSet"]
    pod = sets[0]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    problems = []
    if not re.fullmatch(r"postgres:17\.\d+@sha256:[0-9a-f]{64}", container["image"]):
        problems.append(f"postgres image {container['image']}: want postgres:17.x@sha256:...")
    for probe in ("startupProbe", "readinessProbe"):
        command = container.get(probe, {}).get("exec", {}).get("command", [])
        if command[:1] != ["pg_isready"] or "127.0.0.1" not in command:
            problems.append(f"{probe} is not pg_isready over TCP: {command}")
    if not from_secret(container, "POSTGRES_PASSWORD", "postgres-password"):
        problems.append("POSTGRES_PASSWORD is not the Secret's postgres-password")
    problems += confinement_problems(pod, container)
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    claims = {t["metadata"]["name"] for t in sets[0]["spec"].get("volumeClaimTemplates", [])}
    if mounts.get("/var/lib/postgresql/data") not in claims:
        problems.append("the data directory is not on a persistent volume")
    pgdata = (env_var(container, "PGDATA") or {}).get("value", "")
    if not pgdata.startswith("/var/lib/postgresql/data/"):
        problems.append(f"PGDATA {pgdata!r}: a directory below the volume (lost+found)")
    if "/var/run/postgresql" not in mounts:
        problems.append("no writable socket directory")
    for service in of_kind(objs, "Service"):
        spec = service["spec"]
        selects = "selector" in spec and subset(spec["selector"], POSTGRES)
        if selects and spec.get("type", "ClusterIP") != "ClusterIP":
            problems.append(f"Service {service['metadata']['name']} publishes postgres")
    return problems


def confinement_problems(pod: Obj, container: Obj) -> list[str]:
    """Root, a writable root filesystem or kept capabilities, as problems."""
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    problems = []
    if not security.get("runAsNonRoot") or security.get("runAsUser") in (None, 0):
        problems.append("postgres runs as root")
    if not security.get("readOnlyRootFilesystem"):
        problems.append("postgres root is writable")
    if security.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append("capabilities not dropped")
    return problems


def network_problems(objs: tuple[Obj, ...]) -> list[str]:
    """Why PostgreSQL is reachable by more than auth, or not by auth (empty: exactly auth)."""
    namespace = named(objs, "StatefulSet", "postgres")["metadata"]["namespace"]
    problems = []
    ingress = policies_for(objs, "postgres", "Ingress")
    if not ingress:
        problems.append("no ingress policy selects postgres: every pod reaches it")
    for policy in ingress:
        for rule in policy["spec"].get("ingress", []):
            if "from" not in rule:
                problems.append(f"{policy['metadata']['name']}: a rule from anywhere")
            problems += [
                f"{policy['metadata']['name']}: {peer} is not auth"
                for peer in rule.get("from", [])
                if set(peer) != {"podSelector"} or peer["podSelector"].get("matchLabels") != AUTH
            ]
            ports = {(p.get("port"), p.get("protocol", "TCP")) for p in rule.get("ports", [])}
            if ports != {(5432, "TCP")}:
                problems.append(f"{policy['metadata']['name']}: ports {ports}")
    target = ("pods", {"kubernetes.io/metadata.name": namespace}, POSTGRES, 5432)
    egress = [r for p in policies_for(objs, "auth", "Egress") for r in p["spec"]["egress"]]
    if policies_for(objs, "auth", "Egress") and not any(
        any(p["port"] == 5432 for p in r["ports"])
        and any(peer_matches(peer, target, namespace) for peer in r["to"])
        for r in egress
    ):
        problems.append("auth's egress policies do not admit postgres:5432")
    gateway = [r for p in policies_for(objs, "gateway", "Egress") for r in p["spec"]["egress"]]
    if any(peer_matches(peer, target, namespace) for r in gateway for peer in r["to"]):
        problems.append("the gateway may reach postgres")
    return problems


@pytest.mark.parametrize("target", TARGETS)
def test_auth_migrates_first_then_only_checks(target: str, tmp_path: Path) -> None:
    objs = render(target)
    assert auth_problems(objs) == []
    work = named(objs, "Deployment", "auth")
    pod = work["spec"]["template"]["spec"]
    server = settings_of(objs, work, pod["containers"][0], tmp_path)[1].database
    migrate = settings_of(objs, work, pod["initContainers"][0], tmp_path)[1].database
    assert server.url is not None
    assert server.url.startswith("postgresql+asyncpg://")
    assert server.upgrade_on_start is False
    assert migrate.url == server.url


def test_dev_runs_a_postgres_only_auth_reaches() -> None:
    objs = render("overlays/dev")
    assert postgres_problems(objs) == []
    assert network_problems(objs) == []
    service = named(objs, "Service", "postgres")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(5432, "postgres")]


def test_prod_expects_an_external_postgres() -> None:
    for target in ("overlays/prod", "overlays/prod-gpu-box"):
        objs = render(target)
        assert not [w for w in workloads(objs) if w["metadata"]["name"] == "postgres"]
        service = named(objs, "Service", "postgres")
        assert "selector" not in service["spec"]
        (endpoints,) = [
            s
            for s in of_kind(objs, "EndpointSlice")
            if s["metadata"]["labels"]["kubernetes.io/service-name"] == "postgres"
        ]
        assert [len(e["addresses"]) for e in endpoints["endpoints"]] == [1]


def _mutate(objs: tuple[Obj, ...], kind: str, name: str, change: Any) -> tuple[Obj, ...]:
    copied = copy.deepcopy(list(objs))
    change(next(o for o in copied if o["kind"] == kind and o["metadata"]["name"] == name))
    return tuple(copied)


def _pod(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def _set_env(container: Obj, name: str, var: Obj) -> None:
    container["env"] = [v for v in container["env"] if v["name"] != name] + [var]


BROKEN_AUTH = {
    "literal URL": (
        lambda d: _set_env(_pod(d)["containers"][0], URL_VAR, {"name": URL_VAR, "value": "x"}),
        "not the Secret",
    ),
    "upgrades at start": (
        lambda d: _set_env(
            _pod(d)["containers"][0],
            "TIERGATE_AUTH_DATABASE__UPGRADE_ON_START",
            {"name": "TIERGATE_AUTH_DATABASE__UPGRADE_ON_START", "value": "true"},
        ),
        "may migrate",
    ),
    "no init container": (lambda d: _pod(d).pop("initContainers"), "init containers"),
    "another command": (
        lambda d: _pod(d)["initContainers"][0].update(command=["tiergate", "db", "current"]),
        "init containers",
    ),
    "another image": (
        lambda d: _pod(d)["initContainers"][0].update(image="ghcr.io/tiergate/auth:0.0.9"),
        "migrate runs",
    ),
    "no config": (lambda d: _pod(d)["initContainers"][0].pop("volumeMounts"), "config"),
}


@pytest.mark.parametrize("case", BROKEN_AUTH)
def test_a_broken_auth_pod_fails(case: str) -> None:
    change, problem = BROKEN_AUTH[case]
    problems = auth_problems(_mutate(render("overlays/dev"), "Deployment", "auth", change))
    assert any(problem in p for p in problems), problems


def _publish(service: Obj) -> None:
    service["spec"]["type"] = "NodePort"


BROKEN_POSTGRES = {
    "floating tag": (
        lambda s: _pod(s)["containers"][0].update(image="postgres:17"),
        postgres_problems,
        "image",
    ),
    "socket probe": (
        lambda s: _pod(s)["containers"][0]["readinessProbe"]["exec"].update(command=["pg_isready"]),
        postgres_problems,
        "over TCP",
    ),
    "root": (
        lambda s: _pod(s)["securityContext"].update(runAsUser=0, runAsNonRoot=False),
        postgres_problems,
        "root",
    ),
    "no volume": (lambda s: s["spec"].pop("volumeClaimTemplates"), postgres_problems, "volume"),
    "writable root": (
        lambda s: _pod(s)["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
        postgres_problems,
        "writable",
    ),
    "password literal": (
        lambda s: _set_env(
            _pod(s)["containers"][0],
            "POSTGRES_PASSWORD",
            {"name": "POSTGRES_PASSWORD", "value": "hunter2"},
        ),
        postgres_problems,
        "postgres-password",
    ),
}


@pytest.mark.parametrize("case", BROKEN_POSTGRES)
def test_a_weaker_postgres_fails(case: str) -> None:
    change, check, problem = BROKEN_POSTGRES[case]
    problems = check(_mutate(render("overlays/dev"), "StatefulSet", "postgres", change))
    assert any(problem in p for p in problems), problems


def test_a_published_postgres_fails() -> None:
    problems = postgres_problems(_mutate(render("overlays/dev"), "Service", "postgres", _publish))
    assert any("publishes" in p for p in problems), problems


def _gateway_peer(policy: Obj) -> None:
    policy["spec"]["ingress"][0]["from"].append(
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}
    )


def _gateway_egress(policy: Obj) -> None:
    policy["spec"]["egress"].append(
        {"to": [{"podSelector": {"matchLabels": POSTGRES}}], "ports": [{"port": 5432}]}
    )


@pytest.mark.parametrize(
    ("name", "change", "problem"),
    [
        ("postgres-ingress", _gateway_peer, "is not auth"),
        ("postgres-ingress", lambda p: p["spec"]["ingress"][0].pop("from"), "from anywhere"),
        (
            "postgres-ingress",
            lambda p: p["spec"].update(podSelector={"matchLabels": AUTH}),
            "every pod reaches",
        ),
        ("gateway-egress", _gateway_egress, "gateway may reach"),
    ],
)
def test_a_wider_network_fails(name: str, change: Any, problem: str) -> None:
    problems = network_problems(_mutate(render("overlays/dev"), "NetworkPolicy", name, change))
    assert any(problem in p for p in problems), problems


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[PostgresServer, str]]:
    server = PostgresServer.connect()
    name = server.create_database()
    yield server, name
    server.drop_database(name)
    server.stop()


def test_the_init_container_runs_as_rendered(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    """`migrate`'s command with its rendered environment and the ConfigMap's auth.toml (only
    the URL replaced by a real test database): the schema reaches head, and auth's settings
    from the same manifests then accept it."""
    server, name = database
    objs = render("overlays/prod")
    work = named(objs, "Deployment", "auth")
    migrate = _pod(work)["initContainers"][0]
    settings_of(objs, work, migrate, tmp_path)  # writes tmp_path/auth.toml from the ConfigMap
    env = {
        "TIERGATE_AUTH_CONFIG": str(tmp_path / "auth.toml"),
        URL_VAR: server.url(name),
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
    }
    assert {v["name"] for v in migrate["env"]} == {"TIERGATE_AUTH_CONFIG", URL_VAR}
    done = subprocess.run(
        migrate["command"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    current = subprocess.run(
        ["tiergate", "db", "current"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    shown = re.search(r": (\S+) \(code head: (\S+)\)$", current.stdout.strip())
    assert shown is not None, current.stdout + current.stderr
    assert shown.group(1) == shown.group(2), current.stdout


def test_readme_documents_the_database() -> None:
    readme = (K8S / "README.md").read_text()
    section = readme.split("## Database", 1)[1].split("\n## ", 1)[0]
    for fact in ("database-url", "TIERGATE_AUTH_DATABASE__URL", "init container", "Job",
                 "tiergate db upgrade", "pg_dump", "7", "postgres-external.yaml"):  # fmt: skip
        assert fact in section, fact
