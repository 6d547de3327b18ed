"""tests/deploy: the helper modules its tests share have their asserts rewritten like a test's.

The tests import them relatively (`from .k8s_manifests import render`): under
`--import-mode=importlib`, pytest imports this directory's files as `tests.deploy.<name>`,
`tests` and `tests.deploy` being namespace packages (no __init__.py), so a sibling module is
importable without touching sys.path. A helper's failing assert shows its values only if the
module is registered here, before any test module imports it."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite(
    "tests.deploy.compose_files",
    "tests.deploy.k8s_manifests",
    "tests.deploy.dockerfiles",
    "tests.deploy.observability_files",
)
