"""deploy/k8s: every container of ours loads its settings from what the manifests give it
(config file from the mounted ConfigMap, environment; a misspelt variable fails), and every
ConfigMap and Secret it reads exists: ConfigMaps rendered, Secrets only the documented one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .k8s_manifests import (
    K8S,
    SECRET,
    SECRET_PLACEHOLDERS,
    TARGETS,
    containers,
    env_of,
    named,
    of_kind,
    render,
    service_of,
    settings_of,
)


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
