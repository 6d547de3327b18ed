"""Hooks for every test: a failing test's report carries the output of our services, whatever
a test leaves to the garbage collector is collected before the next one starts, and a test that
starts a model process is marked `model` (so that `make test-fast` can leave it out) without
anyone having to remember to."""

from __future__ import annotations

import ast
import functools
import gc
import inspect
import sys
import textwrap
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

import tiergate_testkit
from tiergate_testkit.services import running_since

_TAIL_CHARS = 8000
_STARTED_AT = pytest.StashKey[float]()
_MODEL_STARTS_SEEN = pytest.StashKey[int]()
_TESTS = Path(__file__).resolve().parent
_TESTKIT = Path(tiergate_testkit.__file__).resolve().parent

MODEL_MODULES = frozenset({"tiergate_cpu_llm", "tiergate_cpu_llm.engine_main"})
"""`python -m` modules whose process runs a model: cpu-llm (it always starts llama.cpp with
the real SmolLM2) and the llama.cpp engine process that cpu-llm and gpu-llm boxes start. A
test whose code, or the code of a fixture it uses, names one of them (directly or in a
function of the tests or the test kit it calls) is marked `model`. The other processes tests start
(redis-server, the fake engine, gateway, auth, rag, gpu-llm with fake engines) load no model
and stay in `make test-fast`."""

_model_starts: list[str] = []
"""argv of every model process this pytest process started (the audit hook below)."""


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Record model processes as they start (asyncio's subprocesses go through Popen too)."""
    if event == "subprocess.Popen" and isinstance(args[1], list | tuple):
        argv = [str(arg) for arg in args[1]]
        if MODEL_MODULES.intersection(argv):
            _model_starts.append(" ".join(argv))


def pytest_configure() -> None:
    # Once per process (each xdist worker too); an audit hook cannot be removed, and costs a
    # comparison per audited event.
    sys.addaudithook(_audit)


@functools.cache
def _scan(code: Callable[..., Any]) -> tuple[bool, tuple[Callable[..., Any], ...]]:
    """(whether the source of `code` names a model module, the functions of the tests it
    refers to by name)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(code)))
    except (OSError, TypeError, SyntaxError):
        return False, ()
    namespace: dict[str, Any] = getattr(code, "__globals__", {})
    names = False
    helpers: dict[Callable[..., Any], None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in MODEL_MODULES:
            names = True
        elif isinstance(node, ast.Name) and _is_test_code(namespace.get(node.id)):
            helpers[namespace[node.id]] = None
    return names, tuple(helpers)


def _names_a_model(code: Callable[..., Any]) -> bool:
    """Whether `code`, or a function of the tests it refers to (transitively), names a model
    module."""
    pending, seen = [code], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        names, helpers = _scan(current)
        if names:
            return True
        pending.extend(helpers)
    return False


def _is_test_code(obj: object) -> bool:
    if not inspect.isfunction(obj):
        return False
    obj = inspect.unwrap(obj)  # a @contextmanager helper: its own code, not contextlib's
    return inspect.isfunction(obj) and _defined_in_tests(obj.__code__.co_filename)


@functools.cache
def _defined_in_tests(filename: str) -> bool:
    """tests/ and the test kit (`tiergate_testkit.grounded` starts cpu-llm for its callers)."""
    path = Path(filename).resolve()
    return path.is_relative_to(_TESTS) or path.is_relative_to(_TESTKIT)


def starts_a_model(item: pytest.Item) -> bool:
    """Whether the test or any fixture it uses (all of its closure) names a model module."""
    if not isinstance(item, pytest.Function):
        return False
    functions = [item.obj]
    for definitions in item._fixtureinfo.name2fixturedefs.values():
        functions.extend(inspect.unwrap(definition.func) for definition in definitions)
    return any(_names_a_model(func) for func in functions)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("model") is None and starts_a_model(item):
            item.add_marker(pytest.mark.model)


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
    item.stash[_MODEL_STARTS_SEEN] = len(_model_starts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, add the last lines printed by each service that ran during the test (CI
    shows only the report, and the services' logs are gone with their temporary files).

    A test not marked `model` that started a model process fails: the detection above missed
    it (say, a helper outside tests/ starts one), and `make test-fast` would run a model."""
    report = yield
    seen = item.stash.get(_MODEL_STARTS_SEEN, len(_model_starts))
    started, item.stash[_MODEL_STARTS_SEEN] = _model_starts[seen:], len(_model_starts)
    if started and report.passed and item.get_closest_marker("model") is None:
        report.outcome = "failed"
        report.longrepr = (
            f"started a model process ({started[0]}) but is not marked `model`: mark it "
            "@pytest.mark.model, or teach tests/conftest.py (MODEL_MODULES) to find it"
        )
    if report.failed:
        for service in running_since(item.stash.get(_STARTED_AT, 0.0)):
            output = service.output()[-_TAIL_CHARS:]
            report.sections.append((f"{service.module} on port {service.port}", output))
    return report
