"""``kprobes serve`` on this host's BPF engine, scraped by urllib, promtool and a real Prometheus.

The served program counts this test process' getpgid() calls on a syscall
tracepoint, with the argument in a hist(), an lhist(), sum() and max(); the
test makes calls with known arguments, so every series has a known value:

* /metrics parsed with prometheus_client's parser: counter, histogram buckets,
  _count/_sum, gauge, labels named after the keys (comm);
* ``promtool check metrics`` accepts the exposition;
* Debian's ``prometheus`` started on 127.0.0.1 with a scrape config for the
  endpoint: its HTTP API returns the counter and histogram series with the
  same values.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from tests.conftest import require
from tests.helpers import ROOT

pytestmark = pytest.mark.host

VALUES = (1, 2, 3, 50, 1000)  # getpgid() arguments: pids that do not exist are fine
ROUNDS = 3


def _program(pid: int) -> str:
    return (f"tracepoint:syscalls:sys_enter_getpgid /pid == {pid}/ {{ @calls[comm] = count(); "
            "@pids = hist(args->pid); @linear = lhist(args->pid, 0, 100, 10); @argsum = sum(args->pid); "
            "@biggest = max(args->pid); }")


def _workload() -> None:
    for _ in range(ROUNDS):
        for v in VALUES:
            try:
                os.getpgid(v)
            except OSError:
                pass


class Served:
    def __init__(self, proc: "subprocess.Popen[str]", url: str, lines: List[str]) -> None:
        self.proc = proc
        self.url = url
        self.lines = lines

    def scrape(self) -> str:
        with urllib.request.urlopen(self.url, timeout=30) as r:
            data: bytes = r.read()
        return data.decode("utf-8")


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    if os.geteuid() != 0:
        require("kprobes serve with the BPF engine needs root")
    pytest.importorskip("prometheus_client", reason="pip install 'kprobes[prometheus]'")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kprobes.cli", "serve", "--engine", "bpf", "--listen", "127.0.0.1:0",
         "--duration", "300", "-e", _program(os.getpid())],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: List[str] = []
    found: List[str] = []

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "metrics on " in line and not found:
                found.append(line.split("metrics on ", 1)[1].strip())

    threading.Thread(target=read_err, daemon=True).start()
    deadline = time.monotonic() + 90
    while not found and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not found:
        proc.kill()
        pytest.fail(f"kprobes serve did not start: {''.join(lines)[-2000:]}")
    s = Served(proc, found[0], lines)
    # Armed only after "Attaching" is printed; the URL line comes before the probes are
    # armed, so wait until a first call is seen.
    deadline = time.monotonic() + 60
    while "kprobes_calls_total" not in s.scrape() and time.monotonic() < deadline:
        try:
            os.getpgid(999999)
        except OSError:
            pass
        time.sleep(0.1)
    base = _samples(s.scrape())
    warm = int(base.get(("kprobes_calls_total", (("comm", _comm()),)), 0))
    _workload()
    s.warm = warm  # type: ignore[attr-defined]
    yield s
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _comm() -> str:
    with open(f"/proc/{os.getpid()}/comm") as f:
        return f.read().strip()


def _samples(text: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def _expected(warm: int) -> Dict[str, float]:
    """Known answers: ``warm`` getpgid(999999) calls made while waiting for the probe, then
    ROUNDS x VALUES."""
    n = ROUNDS * len(VALUES) + warm
    return {"calls": n, "sum": ROUNDS * sum(VALUES) + warm * 999999, "max": 999999 if warm else 1000}


def test_metrics_have_the_workload_values(served: Served) -> None:
    s = _samples(served.scrape())
    warm = served.warm  # type: ignore[attr-defined]
    exp = _expected(warm)
    comm = (("comm", _comm()),)
    assert s[("kprobes_calls_total", comm)] == exp["calls"]
    assert s[("kprobes_argsum_total", ())] == exp["sum"]
    assert s[("kprobes_biggest", ())] == exp["max"]
    # hist(): 1 -> le=1, 2 and 3 -> le=3, 50 -> le=63, 1000 -> le=1023 (cumulative).
    assert s[("kprobes_pids_bucket", (("le", "0"),))] == 0
    assert s[("kprobes_pids_bucket", (("le", "1"),))] == ROUNDS
    assert s[("kprobes_pids_bucket", (("le", "3"),))] == 3 * ROUNDS
    assert s[("kprobes_pids_bucket", (("le", "63"),))] == 4 * ROUNDS
    assert s[("kprobes_pids_bucket", (("le", "1023"),))] == 5 * ROUNDS
    assert s[("kprobes_pids_bucket", (("le", "+Inf"),))] == exp["calls"]
    assert s[("kprobes_pids_count", ())] == exp["calls"]
    # lhist(0, 100, 10): 1, 2, 3 -> le=9; 50 -> le=59; 1000 (and 999999) over the top.
    assert s[("kprobes_linear_bucket", (("le", "9"),))] == 3 * ROUNDS
    assert s[("kprobes_linear_bucket", (("le", "59"),))] == 4 * ROUNDS
    assert s[("kprobes_linear_bucket", (("le", "99"),))] == 4 * ROUNDS
    assert s[("kprobes_linear_count", ())] == exp["calls"]
    assert s[("kprobes_map_series_dropped", (("map", "@calls"),))] == 0


def test_promtool_accepts_the_exposition(served: Served) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        require("promtool is not installed (Debian package prometheus; scripts/install-vm-deps)")
        return
    text = served.scrape()
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port: int = sk.getsockname()[1]
        return port


def test_a_real_prometheus_scrapes_it(served: Served, tmp_path: Path) -> None:
    prom = shutil.which("prometheus")
    if prom is None:
        require("prometheus is not installed (Debian package prometheus; scripts/install-vm-deps)")
        return
    target = urllib.parse.urlparse(served.url).netloc
    port = _free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: kprobes\n    static_configs:\n"
        f"      - targets: ['{target}']\n")
    proc = subprocess.Popen(
        [prom, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    exp = _expected(served.warm)  # type: ignore[attr-defined]
    api = f"http://127.0.0.1:{port}/api/v1/query?query="

    def query(q: str) -> List[dict]:
        with urllib.request.urlopen(api + urllib.parse.quote(q), timeout=10) as r:
            doc = json.loads(r.read().decode("utf-8"))
        assert doc["status"] == "success", doc
        result: List[dict] = doc["data"]["result"]
        return result

    try:
        got: Dict[str, float] = {}
        deadline = time.monotonic() + 90
        want = {"kprobes_calls_total": exp["calls"], 'kprobes_pids_bucket{le="3"}': 3 * ROUNDS,
                "kprobes_pids_count": exp["calls"], "kprobes_argsum_total": exp["sum"]}
        while time.monotonic() < deadline:
            try:
                for q in want:
                    res = query(q)
                    if res:
                        got[q] = float(res[0]["value"][1])
            except OSError:
                pass  # not listening yet
            if got == want:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.5)
        assert proc.poll() is None, f"prometheus exited: {proc.stderr.read() if proc.stderr else ''}"
        assert got == want
        labels = query("kprobes_calls_total")[0]["metric"]
        assert labels["comm"] == _comm() and labels["job"] == "kprobes"
        # Prometheus' own view of the histogram: the median of the values lies in the le=3 bucket.
        q = query("histogram_quantile(0.5, kprobes_pids_bucket)")
        assert q and 1 < float(q[0]["value"][1]) <= 3
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_stops_on_sigterm_and_prints_the_maps(served: Served) -> None:
    served.proc.send_signal(signal.SIGTERM)
    out, _ = served.proc.communicate(timeout=60)
    assert served.proc.returncode == 0, "".join(served.lines)
    exp = _expected(served.warm)  # type: ignore[attr-defined]
    assert f"@calls[{_comm()}]: {int(exp['calls'])}" in out
