"""``--engine auto`` at run time: a program the BPF verifier refuses runs on tracefs.

The refusal is forced (the loader raises the kernel's verifier error): nothing has
run yet, so auto plans the program again on the tracefs engine, says why on one
stderr line, prints ``Attaching N probes...`` once and delivers the events.
"""

from __future__ import annotations

import io
import os
import shutil

import pytest

from tests.conftest import require

pytestmark = pytest.mark.host

PROG = ('tracepoint:sched:sched_process_exec /comm == "kpfallbacktrue"/ '
        '{ printf("exec %s\\n", comm); exit(); }')


def _refuse(*_a: object, **_k: object) -> None:
    from kprobes.errors import VerifierError

    raise VerifierError("BPF_PROG_LOAD failed", "0: (b7) r0 = 0\nR1 invalid mem access 'scalar'\n")


def _run(tmp_path: object, engine: str, monkeypatch: pytest.MonkeyPatch) -> tuple:
    from kprobes.backends.bpf.prog import Program
    from kprobes.engines.base import PlanOptions, prepare
    from kprobes.engines.lifecycle import RunOptions

    if os.geteuid() != 0:
        require("needs root (BPF and tracefs)")
    true = os.path.join(str(tmp_path), "kpfallbacktrue")
    shutil.copy(shutil.which("true") or "/bin/true", true)
    monkeypatch.setattr(Program, "load", classmethod(_refuse))
    sel = prepare(PROG, engine=engine, opts=PlanOptions(child=True))
    assert sel.name == "bpf"
    out, err = io.StringIO(), io.StringIO()
    try:
        status = sel.run(RunOptions(command=true, duration=20), out, err)
    except Exception as e:  # noqa: BLE001 - returned for the assertions
        return None, out.getvalue(), err.getvalue(), e
    return status, out.getvalue(), err.getvalue(), None


def test_auto_runs_a_refused_bpf_program_on_tracefs(tmp_path: object,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    status, out, err, exc = _run(tmp_path, "auto", monkeypatch)
    assert exc is None, exc
    assert status == 0
    assert out.count("Attaching 1 probe...") == 1, out
    assert "exec kpfallbacktrue\n" in out
    lines = [ln for ln in err.splitlines() if "using the tracefs engine" in ln]
    assert len(lines) == 1 and "the bpf engine could not arm the program" in lines[0], err
    assert "verifier refused" in lines[0]


def test_explicit_bpf_engine_reports_the_refusal(tmp_path: object,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from kprobes.errors import EngineArmError

    status, out, err, exc = _run(tmp_path, "bpf", monkeypatch)
    assert isinstance(exc, EngineArmError), (status, out, err)
    assert "verifier refused the program of probe 1" in str(exc)
    assert "invalid mem access" in str(exc)
    assert "exec kpfallbacktrue" not in out


def test_auto_plans_user_space_hist_on_tracefs() -> None:
    """BEGIN/END/interval run in Python: the BPF engine cannot update a per-CPU hist() from
    there, so auto plans such a program on tracefs (and says why); --engine bpf refuses."""
    from kprobes.engines.base import prepare
    from kprobes.lang.diagnostics import LangError

    if os.geteuid() != 0:
        require("needs root (BPF features)")
    prog = "BEGIN { @h = hist(5); @c = count(); exit(); }"
    sel = prepare(prog)
    assert sel.name == "tracefs"
    assert "cannot update a hist() map from a BEGIN probe" in (sel.fallback_line or "")
    with pytest.raises(LangError) as e:
        prepare(prog, engine="bpf")
    assert "--engine tracefs can" in str(e.value)
    assert prepare("BEGIN { @c = count(); exit(); }").name == "bpf"
