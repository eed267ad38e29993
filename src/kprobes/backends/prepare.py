"""From what a user types to the exact definition the kernel gets.

Steps, each optional and each reported with a caret when it fails:

1. the BTF shorthand ``p:FUNC ARGS`` (no event name: FUNC is the function, its
   name becomes the event's);
2. uprobe places by symbol: ``/bin/bash:readline``, ``libc:malloc+4`` →
   ``PATH:0xFILEOFFSET`` through the ELF reader; an offset (``main+4``,
   ``PATH:0x118b``) must start an instruction, or the probe would corrupt
   the program (:mod:`.symbols.placement`; ``unsafe`` skips this);
3. friendly arguments: ``arg2``, ``str(arg2)``, ``retval``, ``comm``;
4. BTF names and member paths for kprobes: ``filename:string``,
   ``sk->__sk_common.skc_dport``, ``((struct task_struct *)arg3)->pid``;
   compiled to fetchargs by kprobes itself, on every kernel (the result is the
   same whether or not the kernel could read BTF names on its own);
5. offline validation against the running kernel's features (tracefs README).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Union

from .._record import dataclass
from ..errors import KprobesError
from ..probes.arch import Arch, get_arch, host_arch
from ..probes.spec import ProbeSpec

if TYPE_CHECKING:
    from ..probes import KernelFeatures

__all__ = ["Prepared", "prepare_definition", "guess_kind", "check_uprobe_placement"]

_HEAD = re.compile(r"^([pr])(\d*)(?::(?:([A-Za-z_][\w]*)/)?([A-Za-z_][\w.]*)?)?$")
_TYPES = re.compile(
    r"^(?:[usx](?:8|16|32|64)|char|string|ustring|symbol|symstr|%pd|%pD|b\d+@\d+/\d+)(?:\[\d+\])?$"
)
_IDENT = re.compile(r"^[A-Za-z_]\w*$")
_RAW_FETCH = re.compile(r"^(?:%|@|\$|\+|-|\\)")


@dataclass(frozen=True)
class Prepared:
    """A definition ready for the kernel: the spec and each field's fetcharg type."""

    spec: ProbeSpec
    types: Dict[str, str]
    original: str
    #: the exact line the offline validator checked (what the kernel is given,
    #: before a session puts in its own group and event names)
    line: str = ""


def guess_kind(words: List[str]) -> str:
    """``uprobe`` when the place is ``PATH:WHERE`` (a path, or a lib name like ``libc:``)."""
    if len(words) >= 2:
        target = words[1]
        if ":" in target:
            left = target.split(":", 1)[0]
            if "/" in left or left.startswith("lib"):
                return "uprobe"
    return "kprobe"


def _looks_like_arg(word: str) -> bool:
    """True when ``word`` is a fetcharg, not a kernel symbol (``MOD:SYM`` is a symbol)."""
    if "=" in word or "->" in word or "(" in word or _RAW_FETCH.match(word):
        return True
    if ":" in word:
        return bool(_TYPES.match(word.rsplit(":", 1)[1]))
    return False


def _btf_shorthand(words: List[str]) -> List[str]:
    """``p:FUNC ARG...`` (FUNC a function, not an event name) → ``p:FUNC FUNC ARG...``."""
    m = _HEAD.match(words[0])
    if not m or m.group(3) or not m.group(4) or "." in m.group(4):
        return words
    if len(words) == 1 or _looks_like_arg(words[1]):
        return [words[0], m.group(4)] + words[1:]
    return words


def _resolve_uprobe_place(word: str, is_return_hint: bool) -> str:
    path, sep, where = word.partition(":")
    if not sep:
        return word
    suffix = ""
    if where.endswith("%return"):
        where, suffix = where[: -len("%return")], "%return"
    ref = ""
    if "(" in where:
        where, ref = where[: where.index("(")], where[where.index("(") :]
    if re.match(r"^(0[xX][0-9a-fA-F]+|\d+)$", where):
        if "/" not in path:
            from .symbols.ldcache import resolve_library

            path = resolve_library(path)
        from .symbols.elf import check_file_offset

        check_file_offset(path, int(where, 16) if where[:2] in ("0x", "0X") else int(where))
        return f"{path}:{where}{ref}{suffix}"
    from .symbols.elf import resolve_uprobe

    if "/" not in path:
        from .symbols.ldcache import resolve_library

        path = resolve_library(path)
    loc = resolve_uprobe(path, where)
    return f"{loc.path}:0x{loc.offset:x}{ref}{suffix}"


def check_uprobe_placement(text: str, place: str, resolved: str) -> None:
    """Refuse a uprobe offset that is not the start of an instruction.

    ``place`` is the place as written in ``text`` (``/bin/x:main+2``,
    ``libc:atoi+3``, ``/bin/x:0x118b``), ``resolved`` the same place as
    ``PATH:0xFILEOFFSET`` after :func:`_resolve_uprobe_place`.  A function
    itself (no offset, or +0) is always fine and costs no reading; anything
    else is decoded by :mod:`.symbols.placement`.  The error's caret is under
    the offset.
    """
    where = place.partition(":")[2].split("(")[0]
    if where.endswith("%return"):
        where = where[: -len("%return")]
    raw = re.match(r"^(0[xX][0-9a-fA-F]+|\d+)$", where)
    if not raw:
        m = re.search(r"\+(0[xX][0-9a-fA-F]+|\d+)$", where)
        if m is None or int(m.group(1), 0) == 0:
            return
    path, _, off = resolved.partition(":")
    off = off.split("(")[0].split("%")[0]
    from .symbols.placement import check_offset

    verdict = check_offset(path, int(off, 16) if off[:2] in ("0x", "0X") else int(off))
    if verdict.ok:
        return
    from ..errors import ProbeSyntaxError

    start = text.find(place, len(text.split()[0]) + text.find(text.split()[0]))
    pos = max(0, start) + len(place.partition(":")[0]) + 1
    if not raw:
        pos += where.rindex("+") + 1
    raise ProbeSyntaxError(verdict.message, text, pos, hint=verdict.hint)


def _needs_btf(arg: str) -> bool:
    """An argument kprobes must compile through BTF (a name or a member path)."""
    body = arg.split("=", 1)[1] if re.match(r"^[A-Za-z_]\w*=(?!=)", arg) else arg
    expr = body
    if ":" in body and _TYPES.match(body.rsplit(":", 1)[1]):
        expr = body.rsplit(":", 1)[0]
    if _RAW_FETCH.match(expr):
        return "->" in expr or "." in expr.lstrip("+-0123456789")
    if expr.startswith("(") or "->" in expr:
        return True
    if _IDENT.match(expr):
        return not re.match(r"^(arg\d+|retval|comm)$", expr)
    return "." in expr or "[" in expr


def running_kernel_features(tracefs_root: Optional[str]) -> "KernelFeatures":
    """The running kernel's rules: its tracefs README plus ``uname -r``.

    Read once per :class:`~kprobes.backends.kernel.Kernel` (the running one when
    ``tracefs_root`` is its tracefs); ``None`` or an unreadable README: the newest rules.
    """
    from .kernel import Kernel, running_kernel

    k = running_kernel()
    if tracefs_root != k.tracefs_root:
        k = Kernel(tracefs_root=tracefs_root)
    return k.tracefs_features


def vmlinux_btf() -> object:
    """The running kernel's BTF, opened once per process (raises BTFError when there is none)."""
    from .kernel import running_kernel

    return running_kernel().btf_or_raise()


def prepare_definition(
    text: str,
    *,
    arch: Union[str, Arch, None] = None,
    features_source: Optional[object] = None,
    btf: Optional[object] = None,
    features: Optional["KernelFeatures"] = None,
    file_check: Optional[Callable[[str], Optional[str]]] = None,
    unsafe: bool = False,
) -> Prepared:
    """Turn a user's definition into a validated :class:`ProbeSpec`.

    ``features_source`` is a :class:`~kprobes.backends.tracefs.fs.TraceFS` whose
    README tells the kernel's features (None: validate for the newest kernel);
    it also means "for this kernel": a kprobe on a kernel without kprobes is
    refused up front.  ``features`` overrides the README (``check --kernel``);
    ``file_check`` is the validator's uprobe-file hook (``local_file_check``).
    ``unsafe`` skips the instruction-boundary check of uprobe offsets
    (:func:`check_uprobe_placement`).
    """
    from ..probes import expand_friendly, validate

    arch_obj = host_arch() if arch is None else (get_arch(arch) if isinstance(arch, str) else arch)
    words = text.split()
    if not words:
        raise KprobesError("empty probe definition", hint="e.g. 'p:myprobe do_sys_openat2'")
    if any(w.startswith(("usdt:", "U:")) for w in words[:2]):
        from .symbols.usdt import usdt_definition_words

        # usdt:BINARY:[PROVIDER:]NAME -> a uprobe on the site with its arguments; the site is
        # the compiler's nop, an instruction start even in a stripped binary
        words, unsafe = usdt_definition_words(words) or words, True
    kind = guess_kind(words)
    if kind == "kprobe" and features_source is not None and words[0][:1] in "pr":
        from .livecheck import LiveKernel, require_kprobes

        require_kprobes(LiveKernel(getattr(features_source, "root", None)))
    if kind == "kprobe" and words[0][:1] in "pr":
        words = _btf_shorthand(words)
    if kind == "uprobe" and len(words) >= 2:
        place = words[1]
        words[1] = _resolve_uprobe_place(words[1], words[0].startswith("r"))
        if not unsafe:
            check_uprobe_placement(text, place, words[1])
    line = " ".join(words)
    if len(words) > 2 and kind == "kprobe":
        func = words[1].split(":")[-1].split("+")[0]
        args = words[2:]
        if any(_needs_btf(a) for a in args):
            btf_obj = btf if btf is not None else vmlinux_btf()
            from ..btf import compile_btf_arg

            compiled: List[str] = []
            for word in args:
                compiled.append(compile_btf_arg(btf_obj, func, word, arch_obj) if _needs_btf(word) else word)  # type: ignore[arg-type]
            line = " ".join(words[:2] + compiled)
    line = expand_friendly(line, kind, arch_obj)
    if features is None and features_source is not None:
        features = running_kernel_features(features_source.root)  # type: ignore[attr-defined]
    parsed = validate(line, kind, features, arch_obj, file_check=file_check)
    if not isinstance(parsed, ProbeSpec):
        raise KprobesError(
            f"{text!r} deletes events; a session only adds its own",
            hint="to remove a persistent probe use: kprobes probe --del NAME",
        )
    types: Dict[str, str] = {}
    for i, a in enumerate(parsed.args):
        name = a.name or f"arg{i + 1}"
        if a.type:
            types[name] = a.type
    return Prepared(spec=parsed, types=types, original=text, line=line)
