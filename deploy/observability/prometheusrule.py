"""The shipped rule files as Prometheus Operator `PrometheusRule` objects, for Kubernetes.

`python deploy/observability/prometheusrule.py` (`make k8s-rules`) writes
`deploy/k8s/base/prometheusrules.yaml`: one object per file in `deploy/observability/rules/`,
its `spec.groups` the file's `groups`, unchanged. `--check` exits 1 when the committed file is
not what the rule files give (a test runs it), so the rules Kubernetes loads are the rules
`promtool` tested. Kustomize cannot wrap a file's content in an object, hence a generated file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "observability" / "rules"
TARGET = ROOT / "deploy" / "k8s" / "base" / "prometheusrules.yaml"
HEADER = """\
# Generated from deploy/observability/rules/*.yml by `make k8s-rules`; do not edit (a test
# fails when this file is stale). For Prometheus Operator users, like servicemonitors.yaml:
# your Prometheus must select these (its ruleSelector; e.g. the kube-prometheus-stack chart's
# `release` label, added by you). Plain Prometheus: the ConfigMap tiergate-prometheus-rules
# (deploy/observability/kustomization.yaml) holds the same files.
"""


def objects() -> list[dict[str, Any]]:
    """One PrometheusRule per rule file, named after it."""
    found = []
    for path in sorted(RULES.glob("*.yml")):
        document = yaml.safe_load(path.read_text())
        found.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PrometheusRule",
                "metadata": {"name": path.stem},
                "spec": {"groups": document["groups"]},
            }
        )
    return found


def render() -> str:
    """The file's text."""
    body = yaml.safe_dump_all(objects(), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def main(argv: list[str]) -> int:
    """Write the file, or with `--check` say whether it is current."""
    text = render()
    if argv == ["--check"]:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run `make k8s-rules`", file=sys.stderr)
            return 1
        return 0
    if argv:
        print("usage: prometheusrule.py [--check]", file=sys.stderr)
        return 2
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
