"""The ``kprobes`` command: the only place that prints or exits.

Subcommands (``kprobes trace|check|list|doctor|gc|probe|record|script|report``)
or bpftrace-style use (``kprobes -e 'PROGRAM'``, ``kprobes FILE.bt``).
Every module is imported lazily so that start-up stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, TextIO

from ..errors import KprobesError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
#: An unexpected exception: a bug in kprobes (sysexits' EX_SOFTWARE).
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

SUBCOMMANDS: Dict[str, str] = {
    "trace": "kprobes.cli.trace",
    "check": "kprobes.cli.check",
    "list": "kprobes.cli.listing",
    "doctor": "kprobes.cli.doctor",
    "gc": "kprobes.cli.gc",
    "probe": "kprobes.cli.probe",
    "record": "kprobes.cli.record",
    "script": "kprobes.cli.script",
    "report": "kprobes.cli.report",
    "tools": "kprobes.cli.tools",
    "flamegraph": "kprobes.cli.flamegraph",
    "perfetto": "kprobes.cli.perfetto",
    "serve": "kprobes.cli.serve",
}

USAGE = """\
usage: kprobes COMMAND [ARGS]          (kprobes COMMAND --help for details)
       kprobes [OPTIONS] -e 'PROGRAM'  (bpftrace language)
       kprobes [OPTIONS] FILE.bt

commands:
  trace DEF...     arm probe definitions and print their events
  check DEF...     validate definitions offline, with the kernel's own messages
  list [GLOB]      probeable kernel functions; why a name is not probeable
  doctor           what this kernel supports, and how to fix what it doesn't
  gc               remove what dead kprobes sessions left in tracefs
  probe            persistent probes (--add/--del/--list), source lines (-L) and variables (-V)
  record -e EV     record events into a file (default kprobes.data)
  script           print a recording one event per line (like perf script)
  report           summarize a recording: events, processes, numeric fields
  tools [NAME]     ready tools: opensnoop, funclatency, funccount... (kprobes tools lists them)
  flamegraph       folded stacks (kprobes --folded) to an interactive SVG flame graph
  perfetto -i F    a recording to a Perfetto / Chrome JSON trace timeline
  serve -e PROG    run a program and serve its maps as Prometheus metrics

exit status: 0 ok, 1 error, 2 usage or syntax error, 3 events lost (trace
--loss-is-error), 69 kernel feature missing, 77 not permitted, 128+N stopped by
signal N (130: Ctrl-C), 70 internal error (a bug; KPROBES_DEBUG=1 shows the traceback)
"""


class Streams:
    """stdout/stderr for a command (tests pass StringIO)."""

    def __init__(self, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr


def report_error(e: KprobesError, streams: Streams) -> None:
    streams.err.write(f"kprobes: error: {e.format()}\n")


def report_internal(e: BaseException, streams: Streams) -> None:
    """The one line an unexpected exception gets (the traceback only with KPROBES_DEBUG=1)."""
    text = " ".join(str(e).split()) or "(no message)"
    if len(text) > 300:
        text = text[:297] + "..."
    streams.err.write(
        f"kprobes: internal error: {type(e).__name__}: {text} (this is a bug; please report it, "
        "run with KPROBES_DEBUG=1 for the traceback)\n"
    )


def _debug_env() -> bool:
    return os.environ.get("KPROBES_DEBUG", "") not in ("", "0")


def main(argv: Optional[Sequence[str]] = None, streams: Optional[Streams] = None) -> int:
    """Run the CLI; returns the exit status (never calls sys.exit).

    A :class:`KprobesError` becomes ``kprobes: error: MESSAGE`` (and its
    ``hint:`` line) with its exit code; any other exception is a bug and
    becomes one ``kprobes: internal error:`` line with status 70
    (``KPROBES_DEBUG=1`` or ``--debug``: the traceback instead).
    KeyboardInterrupt exits 130; other BaseExceptions pass through.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    st = streams or Streams()
    debug = "--debug" in args or _debug_env()
    if "--debug" in args:
        args.remove("--debug")
    try:
        from .validate import check_arguments

        check_arguments(args)
    except KprobesError as e:
        report_error(e, st)
        return e.exit_code
    try:
        if not args or args[0] in ("-h", "--help"):
            st.out.write(USAGE)
            if args:  # kprobes --help: the bpftrace options too
                from .btcompat import HELP

                st.out.write("\nbpftrace-style use (kprobes [options] -e 'program' | FILE [ARGS]):\n\n" + HELP)
            return EXIT_OK if args else EXIT_USAGE
        if args[0] in ("--version", "-V"):
            from .btcompat import version_line

            st.out.write(version_line())
            return EXIT_OK
        if args[0] in SUBCOMMANDS:
            import importlib

            mod = importlib.import_module(SUBCOMMANDS[args[0]])
            run: Callable[[List[str], Streams], int] = mod.run
            return run(args[1:], st)
        from .bpftrace import looks_like_bpftrace

        if looks_like_bpftrace(args):
            from .bpftrace import run as run_bpftrace

            return run_bpftrace(args, st)
        st.err.write(f"kprobes: error: unknown command {args[0]!r}\n{USAGE}")
        return EXIT_USAGE
    except HelpShown as e:
        return e.exit_code
    except KprobesError as e:
        if debug:
            raise
        report_error(e, st)
        return e.exit_code
    except KeyboardInterrupt as e:
        if debug:
            raise
        # Ctrl-C: 130; a stop signal raised as a KeyboardInterrupt subclass carries
        # its own status (128 + signal number).
        code = getattr(e, "exit_code", EXIT_INTERRUPTED)
        return code if isinstance(code, int) else EXIT_INTERRUPTED
    except BrokenPipeError:
        # Reader went away (| head): exit quietly, like cat.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - last resort: one line, not a traceback
        if debug:
            raise
        report_internal(e, st)
        return EXIT_INTERNAL


class ArgParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() decides the exit status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}", hint=f"see: {self.prog} --help")

    def exit(self, status: int = 0, message: Optional[str] = None) -> None:  # type: ignore[override]
        if message:
            sys.stderr.write(message)
        raise HelpShown(status)


class UsageError(KprobesError):
    exit_code = EXIT_USAGE


class HelpShown(KprobesError):
    def __init__(self, status: int) -> None:
        super().__init__("")
        self.exit_code = status

    def format(self) -> str:
        return ""


def parse(parser: ArgParser, args: List[str], streams: Streams) -> Optional[argparse.Namespace]:
    """Parse, printing --help to the command's stream; None when help was shown."""
    if "-h" in args or "--help" in args:
        streams.out.write(parser.format_help())
        return None
    return parser.parse_args(args)


def entry() -> None:
    """console_scripts entry point.

    Ctrl-C (SIGINT) always stops a run, as it stops bpftrace and perf: a shell
    starts background jobs of a script (``kprobes ... &``) with SIGINT ignored,
    and Python would keep ignoring it, so ``kill -INT`` could not end the trace.
    """
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
