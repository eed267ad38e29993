"""``kprobes serve -e 'PROGRAM' --listen 127.0.0.1:9464``: a program's maps on /metrics."""

from __future__ import annotations

import argparse
import threading
from typing import Any, Dict, List, Optional, Tuple

from ..errors import KprobesError
from ..lang.diagnostics import LangError
from .main import ArgParser, Streams, UsageError, parse

DESCRIPTION = """\
Run a bpftrace program (or a ready tool) continuously and serve its maps as
Prometheus metrics on http://LISTEN/metrics, read afresh at every scrape:
count()/sum() as counters, hist()/lhist() as Prometheus histograms,
min()/max()/avg() and plain integers as gauges, stats() as summaries; map keys
become labels named after the key expressions (@[comm, pid] -> comm, pid).
Each map exports at most --max-series entries per scrape (its largest);
kprobes_map_series_dropped tells how many were left out.  Also:
kprobes_events_lost_total, kprobes_map_entries, kprobes_scrapes_total.
Stops on Ctrl-C/SIGTERM, after --duration, or when the program exits; the
maps are printed at the end as usual.  Needs: pip install 'kprobes[prometheus]'.

examples:
  kprobes serve -e 'tracepoint:syscalls:sys_enter_openat { @opens[comm] = count(); }'
  kprobes serve --listen 0.0.0.0:9464 -e 'kretprobe:vfs_read { @bytes = hist(retval); }'
  kprobes serve --tool funclatency -- vfs_read
"""


def build_parser() -> ArgParser:
    p = ArgParser(prog="kprobes serve", description=DESCRIPTION,
                  usage="kprobes serve (-e PROGRAM | FILE.bt | --tool NAME [-- TOOL ARGS]) "
                        "[--listen HOST:PORT] [options]",
                  formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("file", nargs="?", metavar="FILE.bt", help="program file")
    p.add_argument("-e", dest="program", metavar="PROGRAM", help="program text")
    p.add_argument("--tool", metavar="NAME", help="a ready tool (kprobes tools); its options after --")
    p.add_argument("--listen", default="127.0.0.1:9464", metavar="HOST:PORT",
                   help="where to serve /metrics (default 127.0.0.1:9464; port 0: any free port)")
    p.add_argument("--prefix", default="kprobes", help="metric name prefix (default kprobes)")
    p.add_argument("--max-series", type=int, default=1000, metavar="N",
                   help="at most N entries of each map per scrape (default 1000)")
    p.add_argument("-p", dest="pid", type=int, metavar="PID", help="only events of this process")
    p.add_argument("--duration", type=float, metavar="SECS", help="stop after SECS seconds")
    p.add_argument("--engine", choices=("auto", "bpf", "tracefs"), default="auto",
                   help="engine (default auto: bpf where the kernel allows it)")
    return p


def parse_listen(text: str) -> Tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``, ``:PORT`` = all interfaces) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise UsageError(f"--listen {text!r}: no port", hint="give HOST:PORT, e.g. 127.0.0.1:9464")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        n = int(port)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise UsageError(f"--listen {text!r}: bad port {port!r}", hint="a port is 0..65535")
    return host or "0.0.0.0", n


def _program(ns: argparse.Namespace, tool_args: List[str]) -> Tuple[str, str]:
    given = [x for x in (ns.program, ns.file, ns.tool) if x is not None]
    if len(given) != 1:
        raise UsageError("give one of -e PROGRAM, a program file or --tool NAME",
                         hint="kprobes serve -e 'tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }'")
    if tool_args and ns.tool is None:
        raise UsageError("arguments after -- are for --tool NAME")
    if ns.program is not None:
        return ns.program, "stdin"
    if ns.file is not None:
        from . import validate

        try:
            with open(ns.file, "rb") as f:
                data = f.read()
        except OSError as e:
            raise KprobesError(f"cannot read {ns.file}: {e.strerror}",
                               hint="give the path of a bpftrace program file (.bt)") from None
        return validate.decode_program(data, ns.file), ns.file
    from ..backends.kernel import running_kernel
    from ..tools import build, get_tool
    from .tools import tool_options

    tool = get_tool(ns.tool)
    options = tool_options(tool, tool_args)
    if options is None:
        raise UsageError(f"see: kprobes tools {tool.name} --help")
    if options.get("interval"):
        raise UsageError("a tool's -i/--interval clears its maps: not with serve",
                         hint="Prometheus computes rates from the counters itself")
    return build(tool, options, running_kernel()), tool.file


def run(args: List[str], streams: Streams) -> int:
    tool_args: List[str] = []
    if "--" in args:
        i = args.index("--")
        args, tool_args = args[:i], args[i + 1:]
    ns = parse(build_parser(), args, streams)
    if ns is None:
        return 0
    from ..export.prometheus import MapCollector, label_names, require_client
    from . import validate

    client = require_client()
    validate.check_duration(ns.duration)
    if ns.max_series < 1:
        raise UsageError(f"--max-series {ns.max_series}: must be at least 1")
    host, port = parse_listen(ns.listen)
    text, filename = _program(ns, tool_args)
    from ..engines.base import PlanOptions, prepare
    from ..engines.lifecycle import Lifecycle, RunOptions

    try:
        sel = prepare(text, filename, engine=ns.engine, opts=PlanOptions(pid=ns.pid or 0))
    except LangError as e:
        streams.err.write(e.message + "\n")
        return e.exit_code
    if sel.fallback_line:
        streams.err.write(sel.fallback_line + "\n")
    validate.check_pid(ns.pid)
    live: Dict[str, Any] = {}

    def maps() -> Dict[str, Any]:
        lc: Optional[Lifecycle] = live.get("lc")
        return dict(lc.rt.maps) if lc is not None and not live.get("done") else {}

    def loss() -> Dict[str, int]:
        lc: Optional[Lifecycle] = live.get("lc")
        counts = getattr(lc, "loss", None) if lc is not None else None
        return dict(counts.by_source()) if counts is not None else {}

    collector = MapCollector(maps, label_names(sel.plan.checked.program), prefix=ns.prefix,
                             max_series=ns.max_series, loss=loss)
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server = _serve(client, registry, host, port)
    bound = server.server_address
    streams.err.write(f"kprobes serve: metrics on http://{_url_host(host)}:{bound[1]}/metrics\n")
    streams.err.flush()
    try:
        opts = RunOptions(pid=ns.pid, duration=ns.duration,
                          observe=lambda lc: live.__setitem__("lc", lc))
        return sel.run(opts, streams.out, streams.err)
    finally:
        live["done"] = True
        server.shutdown()
        server.server_close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _serve(client: Any, registry: Any, host: str, port: int) -> Any:
    """A threaded HTTP server for the registry's WSGI app, in a daemon thread."""
    import socket
    import socketserver
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            pass

    class Server(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        httpd = make_server(host, port, client.make_wsgi_app(registry), Server, handler_class=Quiet)
    except OSError as e:
        raise KprobesError(f"--listen {host}:{port}: {e.strerror or e}",
                           hint="pick a free port (or 0 for any), or an address of this machine") from None
    threading.Thread(target=httpd.serve_forever, name="kprobes-serve", daemon=True).start()
    return httpd
