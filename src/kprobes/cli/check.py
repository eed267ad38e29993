"""``kprobes check [--kernel X.Y] [--json] DEF...``: what the kernel will say about a definition."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Dict, List, Optional

from ..errors import KprobesError, NotTraceableError, ProbeSyntaxError
from .main import ArgParser, Streams, parse

if TYPE_CHECKING:
    from ..backends.livecheck import LiveKernel
    from ..probes import KernelFeatures

DESCRIPTION = """\
Validate dynamic-event definitions and report what the kernel would say: its own
error message and the position of the offending character (as error_log shows it).

On the running kernel (the default) the definition goes through the same
preparation as 'kprobes trace' (BTF names, uprobe symbols such as /bin/bash:readline
or libc:malloc, friendly arguments), is validated with the kernel's features (its
tracefs README), and then checked against what the kernel verifies at registration:
the symbol exists and is unique, the module is loaded, the uprobe file exists and is
a regular file, the event name is free, and that the kernel has kprobes at all.
With --kernel X.Y (or --offline) only the syntax rules of that version are checked.
t:SYS:EVENT checks that the tracepoint exists.

Exit 0 and print the normalized definition when all are valid; exit 2 otherwise.
"""


def build_parser() -> ArgParser:
    p = ArgParser(prog="kprobes check", description=DESCRIPTION,
                  formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("definitions", nargs="+", metavar="DEF")
    p.add_argument("--kernel", metavar="X.Y",
                   help="validate offline for this kernel version (e.g. 5.15, 6.1, 6.12)")
    p.add_argument("--offline", action="store_true",
                   help="syntax only, with the running kernel's features: no symbol, file or name checks")
    p.add_argument("--kind", choices=("kprobe", "uprobe", "auto"), default="auto",
                   help="kprobe_events or uprobe_events syntax (default: from the place)")
    p.add_argument("--arch", default=None, help="x86_64 or arm64 (default: this machine)")
    p.add_argument("--json", action="store_true", help="one JSON object per definition")
    p.add_argument("--unsafe", action="store_true",
                   help="accept uprobe offsets not proven to start an instruction")
    return p


def _tracefs_root() -> Optional[str]:
    from ..backends.tracefs.fs import find_tracefs

    try:
        return find_tracefs(mount=False)
    except KprobesError:
        return None  # no tracefs (or not allowed): validate for the newest kernel


def _features(version: Optional[str], root: Optional[str]) -> "KernelFeatures":
    from ..probes import KernelFeatures

    if version:
        return KernelFeatures.for_version(version)
    from ..backends.prepare import running_kernel_features

    return running_kernel_features(root)


def _failure(text: str, e: KprobesError) -> Dict[str, object]:
    if isinstance(e, ProbeSyntaxError):
        return {"ok": False, "definition": text, "checked": e.text, "message": e.kernel_message,
                "position": e.position, "hint": e.hint, "error": e.format()}
    return {"ok": False, "definition": text, "checked": text, "message": e.message,
            "position": None, "hint": e.hint, "error": e.format()}


def _tracepoint(text: str, live: Optional["LiveKernel"]) -> Dict[str, object]:
    name = text.split(":", 1)[1]
    sys_, sep, ev = name.replace("/", ":").partition(":")
    if not sep or not sys_ or not ev or ":" in ev:
        return _failure(text, KprobesError(f"{text!r} is not a tracepoint: t:SYSTEM:EVENT",
                                           hint="list them with: kprobes list 'tracepoint:*'"))
    if live is not None and live.tracefs and not live.event_exists(sys_, ev):
        return _failure(text, NotTraceableError(name, "no such tracepoint",
                                                hint="list them with: kprobes list 'tracepoint:*'"))
    return {"ok": True, "definition": text, "normalized": f"t:{sys_}:{ev}", "kind": "tracepoint",
            "message": None, "position": None}


def _raw_uprobe_error(text: str, kind: str, features: object, arch: str,
                      file_check: object) -> Optional[ProbeSyntaxError]:
    from ..probes import expand_friendly, validate
    from ..probes.kmsg import KERNEL_ERRORS

    if kind != "uprobe" or file_check is None:
        return None
    try:
        validate(expand_friendly(text, kind, arch), kind, features, arch,  # type: ignore[arg-type]
                 file_check=file_check)  # type: ignore[arg-type]
    except ProbeSyntaxError as e:
        files = (KERNEL_ERRORS["FILE_NOT_FOUND"], KERNEL_ERRORS["NO_REGULAR_FILE"])
        return e if e.kernel_message in files else None
    except KprobesError:
        return None
    return None


def _in_user_words(e: ProbeSyntaxError, text: str) -> ProbeSyntaxError:
    """An error in the prepared line, pointed at the same word of what the user typed.

    prepare rewrites words (BTF names -> fetchargs, friendly names), so a
    position in its line is not one in the user's; the kernel, given the
    user's line, points at the word's start.
    """
    mine, theirs = e.text.split(), text.split()
    if e.text == " ".join(theirs) or len(mine) != len(theirs):
        return e
    starts = [sum(len(w) + 1 for w in mine[:i]) for i in range(len(mine))]
    idx = max(i for i, st in enumerate(starts) if st <= e.position)
    if starts[idx] != e.position:
        return e  # inside a word: the offset within the rewritten word means nothing here
    pos = sum(len(w) + 1 for w in theirs[:idx])
    return ProbeSyntaxError(e.kernel_message, " ".join(theirs), pos, hint=e.hint)


def check_one(text: str, kind: str, features: object, arch: str,
              live: Optional["LiveKernel"] = None, unsafe: bool = False) -> Dict[str, object]:
    """One definition's verdict; ``live`` adds the running kernel's registration checks."""
    from ..backends.livecheck import endbr_entry_line, live_verdict
    from ..backends.prepare import guess_kind, prepare_definition
    from ..probes import ProbeSpec, expand_friendly, validate
    from ..probes.validate import local_file_check

    if text.startswith(("t:", "tracepoint:")):
        return _tracepoint(text, live)
    words = text.split()
    k = guess_kind(words) if kind == "auto" else kind
    file_check = local_file_check if live is not None else None
    spec: Optional[ProbeSpec] = None
    offline: Optional[ProbeSyntaxError] = None
    line = " ".join(words)
    try:
        if kind == "auto":
            prepared = prepare_definition(text, arch=arch, features=features,  # type: ignore[arg-type]
                                          file_check=file_check, unsafe=unsafe)
            spec, line = prepared.spec, prepared.line
        else:
            line = expand_friendly(text, k, arch)
            parsed = validate(line, k, features, arch, file_check=file_check)  # type: ignore[arg-type]
            spec = parsed if isinstance(parsed, ProbeSpec) else None
            if spec is None:
                return {"ok": True, "definition": text, "normalized": parsed.render(), "kind": k,
                        "message": None, "position": None}
    except ProbeSyntaxError as e:
        offline, line = e, e.text
    except KprobesError as e:
        # The ELF reader refused the uprobe file (missing, not ELF...): when the
        # kernel would refuse the line too, say it in the kernel's words.
        raw = _raw_uprobe_error(text, k, features, arch, file_check)
        if raw is None:
            return _failure(text, e)
        offline, line = raw, raw.text
    keep_line = False  # SYM+4 is the entry (ENDBR): the spec was checked as SYM
    if offline is not None:
        offline = _in_user_words(offline, text)
    if live is not None and offline is not None:
        entry = endbr_entry_line(line, offline, live)
        if entry is not None:
            try:
                parsed = validate(entry, k, features, arch, file_check=file_check)  # type: ignore[arg-type]
                if isinstance(parsed, ProbeSpec):
                    spec, offline, keep_line = parsed, None, True
            except ProbeSyntaxError:
                pass
    if live is not None:
        try:
            verdict = live_verdict(line, k, spec, offline, live)
        except KprobesError as e:
            verdict = e
        if verdict is not None:
            return _failure(text, verdict)
    elif offline is not None:
        return _failure(text, offline)
    assert spec is not None
    normalized = line if keep_line else spec.render()
    return {"ok": True, "definition": text, "normalized": normalized, "kind": k,
            "message": None, "position": None}


def run(args: List[str], streams: Streams) -> int:
    ns = parse(build_parser(), args, streams)
    if ns is None:
        return 0
    from ..backends.livecheck import LiveKernel
    from ..probes.arch import host_arch

    arch = ns.arch or host_arch().name
    root = None if ns.kernel else _tracefs_root()
    features = _features(ns.kernel, root)
    offline = bool(ns.kernel or ns.offline or arch != host_arch().name)
    live = None if offline else LiveKernel(root)
    bad = 0
    for d in ns.definitions:
        res = check_one(d, ns.kind, features, arch, live, unsafe=ns.unsafe)
        if not res["ok"]:
            bad += 1
        if ns.json:
            streams.out.write(json.dumps({k: v for k, v in res.items() if k != "error"}) + "\n")
        elif res["ok"]:
            streams.out.write(f"{res['normalized']}\n")
        else:
            streams.err.write(f"kprobes: error: {res['error']}\n")
    return 2 if bad else 0
