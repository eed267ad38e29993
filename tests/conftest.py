"""Test tiers and their prerequisites.

- tests/unit: no kernel, no root.
- tests/host (marker ``host``): real tracefs on any kernel (tracepoints, uprobes, instances).
- tests/kernel (marker ``kernel``): a kernel with kprobes; CI runs these inside the VM
  (scripts/vmrun) on Debian's 6.1 and 6.12 kernels.

On a developer machine without the prerequisites these tests SKIP with the reason
printed (``-ra``).  With ``KPROBES_REQUIRE_KERNEL=1`` (set by scripts/test inside the
VM and on the CI host) a missing prerequisite is a FAILURE, never a skip.
"""

from __future__ import annotations

import os
from typing import Optional

import pytest

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

if os.environ.get("KPROBES_IN_VM") == "1" or not os.access(os.getcwd(), os.W_OK):
    # The guest sees the checkout read-only: keep Hypothesis' example database in memory.
    try:
        from hypothesis import settings

        settings.register_profile("readonly", database=None)
        settings.load_profile("readonly")
    except ImportError:  # pragma: no cover
        pass


def required() -> bool:
    return os.environ.get("KPROBES_REQUIRE_KERNEL") == "1"


def require(reason: str) -> None:
    """Skip (developer machine) or fail (CI) because a prerequisite is missing."""
    if required():
        pytest.fail(f"prerequisite missing and KPROBES_REQUIRE_KERNEL=1: {reason}", pytrace=False)
    pytest.skip(reason)


def tracefs_root() -> Optional[str]:
    for p in TRACEFS_CANDIDATES:
        if os.path.exists(os.path.join(p, "README")):
            return p
    return None


def _host_problem() -> Optional[str]:
    if os.geteuid() != 0:
        return "host tests need root (tracefs writes)"
    root = tracefs_root()
    if root is None:
        return "tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)"
    if not os.access(os.path.join(root, "instances"), os.W_OK):
        return f"{root}/instances is not writable"
    return None


def _kernel_problem() -> Optional[str]:
    p = _host_problem()
    if p:
        return p
    root = tracefs_root()
    assert root is not None
    if not os.path.exists(os.path.join(root, "kprobe_events")):
        return (
            "this kernel has no kprobe_events (CONFIG_KPROBE_EVENTS off); "
            "run the kernel suite in the VM: scripts/vmrun -- .venv/bin/python -m pytest tests/kernel"
        )
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kernel") is not None:
        problem = _kernel_problem()
        if problem:
            require(problem)
    elif item.get_closest_marker("host") is not None:
        problem = _host_problem()
        if problem:
            require(problem)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # scripts/vmstage: the tests a wedged guest had finished, by exact node id (pytest's own
    # --deselect matches prefixes: test_open would also drop test_open_flags)
    done_file = os.environ.get("KPROBES_DESELECT_FILE")
    if done_file:
        with open(done_file) as f:
            done = {line.rstrip("\n") for line in f if line.strip()}
        dropped = [item for item in items if item.nodeid in done]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if item.nodeid not in done]
    # Directory decides the tier, so a test cannot forget its marker.
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}tests{os.sep}kernel{os.sep}" in path:
            item.add_marker(pytest.mark.kernel)
        elif f"{os.sep}tests{os.sep}host{os.sep}" in path:
            item.add_marker(pytest.mark.host)


#: pytest-timeout (300 s, signal method) fails a test stuck in Python code; a test stuck
#: where SIGALRM cannot reach it (an uninterruptible system call, a wedged guest kernel,
#: a lost signal) would otherwise run on until the CI stage's deadline with no clue.  This
#: watchdog dumps every thread's Python stack, then ends pytest, so the log names the
#: test and where it was stuck.
HARD_TIMEOUT = 420


_watchdog_err = None  # a copy of the real stderr: during a test pytest captures fd 2


def pytest_configure(config: pytest.Config) -> None:
    global _watchdog_err
    try:
        _watchdog_err = os.fdopen(os.dup(2), "w")
    except OSError:  # pragma: no cover
        _watchdog_err = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]):  # type: ignore[no-untyped-def]
    import faulthandler

    if _watchdog_err is None:
        yield
        return
    faulthandler.dump_traceback_later(HARD_TIMEOUT, exit=True, file=_watchdog_err)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(trylast=True)
def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    # -v has written "tests/...::name " (its result follows on the same line): out now, so
    # that a run that stops dead (scripts/vmstage, a CI log) shows which test was running
    import sys

    sys.stdout.flush()
