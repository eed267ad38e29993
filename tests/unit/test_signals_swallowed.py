"""A stop signal whose exception Python had to swallow (it landed in a finalizer) is not lost.

Runs in a child process: the child sends itself SIGTERM/SIGHUP from inside ``__del__``,
where the handler's exception can only go to ``sys.unraisablehook``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import os, signal, sys
from kprobes.backends.signals import stop_on_signals, swallowed_stop

class Finalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.SIG)
        for _ in range(100000):  # Python code: the handler runs here
            pass

def other(u):
    print("other hook:", u.exc_type.__name__, flush=True)

sys.unraisablehook = other
with stop_on_signals():
    assert swallowed_stop() is None
    Finalizer()
    print("swallowed:", swallowed_stop(), flush=True)
    class Broken:
        def __del__(self):
            raise ValueError("not a signal")
    Broken()
print("hook restored:", sys.unraisablehook is other, flush=True)
with stop_on_signals():
    print("fresh block:", swallowed_stop(), flush=True)
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_stop_on_signals_remembers_a_swallowed_stop(sig: str) -> None:
    p = subprocess.run([sys.executable, "-c", CHILD.replace("signal.SIG)", f"signal.{sig})")],
                       capture_output=True, text=True, timeout=60)
    import signal

    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        f"swallowed: {getattr(signal, sig).value}",
        "other hook: ValueError",  # other unraisable exceptions still reach the previous hook
        "hook restored: True",
        "fresh block: None",
    ], p.stdout + p.stderr
