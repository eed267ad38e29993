"""A function missing from the running kernel is named by what it became.

6.12: the seed's ``kprobe:__alloc_pages`` (verbatim, through ``kprobes -e``) must
name ``__alloc_pages_noprof`` (renamed in 6.10).  6.1 still has ``__alloc_pages``;
there ``_do_fork`` (renamed ``kernel_clone`` in 5.10) is the missing function.
The same answer comes from ``trace`` (the kernel's refusal, with the live hint)
and from ``check`` (before anything is written).
"""

from __future__ import annotations

from typing import Tuple

from tests.helpers import run_cli, session_leftovers
from tests.kernel.test_seed_bpftrace import ALLOCS, kallsyms_has


def _missing() -> Tuple[str, str, str, str]:
    """(program, old name, new name, version) for this kernel."""
    if not kallsyms_has("__alloc_pages"):
        assert kallsyms_has("__alloc_pages_noprof")
        return ALLOCS, "__alloc_pages", "__alloc_pages_noprof", "6.10"
    assert not kallsyms_has("_do_fork") and kallsyms_has("kernel_clone")
    return "kprobe:_do_fork { @ = count(); }", "_do_fork", "kernel_clone", "5.10"


def test_bpftrace_program_names_the_renamed_function() -> None:
    prog, old, new, version = _missing()
    rc, out, err = run_cli(["-e", prog])
    assert rc != 0, out
    assert f"no function {old} in this kernel; it was renamed {new} in {version}" in err, err
    assert "Traceback" not in err
    assert not session_leftovers()


def test_trace_and_check_name_the_renamed_function() -> None:
    _prog, old, new, version = _missing()
    rc, _out, err = run_cli(["trace", "--duration", "1", f"p:x {old}"])
    assert rc != 0 and "Invalid probed address or symbol" in err, err
    assert f"renamed {new} in {version}" in err, err
    rc, _out, err = run_cli(["check", f"p:x {old} a=%di"])
    assert rc == 2 and "Invalid probed address or symbol (at position 4, check)" in err, err
    assert f"renamed {new} in {version}" in err, err
    assert not session_leftovers()
