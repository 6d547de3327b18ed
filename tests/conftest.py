"""Hooks for every test: a failing test's report carries the output of our services, and
whatever a test leaves to the garbage collector is collected before the next one starts."""

from __future__ import annotations

import gc
import time
from collections.abc import Generator, Iterator

import pytest

from tiergate_testkit.services import running_since

_TAIL_CHARS = 8000
_STARTED_AT = pytest.StashKey[float]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move everything alive after collection (modules, imports) out of the collector's reach:
    the collection after each test then scans only what tests made (~3 ms, not ~90 ms)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect after each test, so that an unclosed socket or client it left behind raises its
    ResourceWarning (an error: warnings are errors) in that test's teardown, not in whichever
    later test the collector happens to run in (issue 10: an unclosed socket failed
    tests/gateway/test_app_errors.py::test_deeply_nested_json_is_400; collected here, it was
    an unclosed openai client's, in tests/e2e/test_real_model.py's teardown)."""
    yield
    gc.collect()


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
