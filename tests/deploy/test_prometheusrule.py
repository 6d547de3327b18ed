"""deploy/k8s/base/prometheusrules.yaml is the shipped rule files, current, in every overlay:
the rules a Prometheus Operator loads are the ones promtool checks and unit-tests."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from .k8s_manifests import OVERLAYS, ROOT, of_kind, render
from .observability_files import ALERTS, RECORDING

GENERATOR = ROOT / "deploy" / "observability" / "prometheusrule.py"


def test_the_committed_file_is_what_the_rule_files_give() -> None:
    checked = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_ships_each_rule_file_unchanged(overlay: str) -> None:
    rendered = {obj["metadata"]["name"]: obj for obj in of_kind(render(overlay), "PrometheusRule")}
    assert set(rendered) == {ALERTS.stem, RECORDING.stem}
    for path in (ALERTS, RECORDING):
        assert rendered[path.stem]["spec"]["groups"] == yaml.safe_load(path.read_text())["groups"]
