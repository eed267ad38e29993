"""Start-up cost guards: what `kprobes -e` must not import (see kprobes._record)."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "kprobes"


def test_no_module_imports_dataclasses() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if "dataclasses" in names:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders, (
        "use kprobes._record (same dataclass/field/replace/fields/asdict API) instead of "
        f"dataclasses, which costs inspect+ast and exec() per class at import: {offenders}")


def test_bpftrace_path_stays_lean() -> None:
    """Planning a one-liner (both engines' --dry-run) loads no heavy stdlib module."""
    code = (
        "import sys, io, contextlib\n"
        "from kprobes.cli.main import main\n"
        "for engine in ('bpf', 'tracefs'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n"
        "            main(['--engine', engine, '--dry-run', '-e',\n"
        "                  'tracepoint:sched:sched_switch { @[comm] = count(); }'])\n"
        "        except SystemExit:\n"
        "            pass\n"
        "heavy = ['dataclasses', 'inspect', 'ast', 'email', 'decimal', 'typing_extensions',\n"
        "         'importlib.metadata', 'pickle', 'tokenize']\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [], f"loaded on the -e path: {out.stdout.strip()}"
