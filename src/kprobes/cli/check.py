"""``kprobes check [--kernel X.Y] [--json] DEF...``: validate definitions without a kernel."""

from __future__ import annotations

import json
from typing import Dict, List, Optional

from ..errors import KprobesError, ProbeSyntaxError
from .main import ArgParser, Streams, parse

DESCRIPTION = """\
Validate dynamic-event definitions offline and report what the kernel would say:
its own error message and the position of the offending character (as error_log
shows it), for a chosen kernel version or, by default, for the running kernel's
features (read from tracefs' README when it is readable, else the newest rules).

Exit 0 and print the normalized definition when all are valid; exit 2 otherwise.
Friendly forms (arg2, str(arg2), retval, comm) are expanded first.
"""


def build_parser() -> ArgParser:
    p = ArgParser(prog="kprobes check", description=DESCRIPTION,
                  formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("definitions", nargs="+", metavar="DEF")
    p.add_argument("--kernel", metavar="X.Y", help="validate for this kernel version (e.g. 5.15, 6.1, 6.12)")
    p.add_argument("--kind", choices=("kprobe", "uprobe", "auto"), default="auto",
                   help="kprobe_events or uprobe_events syntax (default: from the place)")
    p.add_argument("--arch", default=None, help="x86_64 or arm64 (default: this machine)")
    p.add_argument("--json", action="store_true", help="one JSON object per definition")
    return p


def _features(version: Optional[str]) -> object:
    from ..probes import KernelFeatures

    if version:
        return KernelFeatures.for_version(version)
    from ..backends.prepare import running_kernel_features
    from ..backends.tracefs.fs import find_tracefs

    try:
        root: Optional[str] = find_tracefs(mount=False)
    except KprobesError:
        root = None  # no tracefs (or not allowed): validate for the newest kernel
    return running_kernel_features(root)


def check_one(text: str, kind: str, features: object, arch: str) -> Dict[str, object]:
    from ..backends.prepare import guess_kind
    from ..probes import expand_friendly, validate

    k = guess_kind(text.split()) if kind == "auto" else kind
    try:
        expanded = expand_friendly(text, k, arch)
        spec = validate(expanded, k, features, arch)  # type: ignore[arg-type]
    except ProbeSyntaxError as e:
        return {"ok": False, "definition": text, "checked": e.text, "message": e.kernel_message,
                "position": e.position, "hint": e.hint, "error": e.format()}
    return {"ok": True, "definition": text, "normalized": spec.render(), "kind": k,
            "message": None, "position": None}


def run(args: List[str], streams: Streams) -> int:
    ns = parse(build_parser(), args, streams)
    if ns is None:
        return 0
    from ..probes.arch import host_arch

    arch = ns.arch or host_arch().name
    try:
        features = _features(ns.kernel)
    except KprobesError:
        raise
    bad = 0
    for d in ns.definitions:
        res = check_one(d, ns.kind, features, arch)
        if not res["ok"]:
            bad += 1
        if ns.json:
            streams.out.write(json.dumps({k: v for k, v in res.items() if k != "error"}) + "\n")
        elif res["ok"]:
            streams.out.write(f"{res['normalized']}\n")
        else:
            streams.err.write(f"kprobes: error: {res['error']}\n")
    return 2 if bad else 0
