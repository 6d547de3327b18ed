"""Hooks for every test: a failing test's report carries the output of our services."""

from __future__ import annotations

import time
from collections.abc import Generator

import pytest

from tiergate_testkit.services import running_since

_TAIL_CHARS = 8000
_STARTED_AT = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STARTED_AT] = time.monotonic()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, add the last lines printed by each service that ran during the test (CI
    shows only the report, and the services' logs are gone with their temporary files)."""
    report = yield
    if report.failed:
        for service in running_since(item.stash.get(_STARTED_AT, 0.0)):
            output = service.output()[-_TAIL_CHARS:]
            report.sections.append((f"{service.module} on port {service.port}", output))
    return report
