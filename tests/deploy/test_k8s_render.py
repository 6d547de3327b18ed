"""deploy/k8s: kustomize renders each target, every object passes its schema (the Kubernetes
API's for the oldest supported and the newest bundled version, the vendored CRDs' for KEDA and
Prometheus), and every image is pinned."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from .k8s_manifests import K8S, TARGETS, Obj, containers, render

K8S_VERSIONS = ["1.31.0", "1.37.0"]  # the oldest supported and the newest bundled


# --- rendering and schemas ----------------------------------------------------------------


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


# --- images -------------------------------------------------------------------------------


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
