"""What one kernel's probe-event parser accepts: :class:`KernelFeatures`.

Prefer :meth:`KernelFeatures.from_readme` (tracefs ``README`` lists the
fetchargs and types the running kernel knows).  A few behaviours leave no
trace in the README (error wording, the event-size limit, how ``(`` is
treated); for those ``from_readme`` takes the running kernel's release and
falls back to the newest behaviour.  :meth:`KernelFeatures.for_version`
gives presets from upstream history; the version each rule arrived in is
noted next to it.  Stable kernels carry backports, and the presets follow
what the current stable release of a series does (verified on Debian's
6.1.158 and 6.12.117 by tests/kernel/test_check_agrees_kprobe.py, and on
6.18 by tests/host/test_check_agrees_uprobe.py): where a rule landed
upstream later than a series but was backported to it, the series gets it.
"""

from __future__ import annotations

import re

from .._record import dataclass, replace
from ..errors import KprobesError

__all__ = ["KernelFeatures", "BASIC_TYPES"]

BASIC_TYPES: frozenset[str] = frozenset(
    f"{k}{n}" for k in "usx" for n in (8, 16, 32, 64)
) | frozenset({"string", "symbol"})

_TYPO_BAD_VAR = "Invalid $-valiable specified"
_FIXED_BAD_VAR = "Invalid $-variable specified"
_OLD_MAXACT = "Maxactive is not for kprobe"
_NEW_MAXACT = "Maxactive is only for function exit"

# Field names a fetcharg may not take (reserved_field_names, trace_probe.c).
_RESERVED = (
    "common_type",
    "common_flags",
    "common_preempt_count",
    "common_pid",
    "common_tgid",
    "__probe_ip",
    "__probe_ret_ip",
    "__probe_func",
)


def _version_tuple(version: str) -> tuple[int, int]:
    m = re.match(r"\s*(\d+)\.(\d+)", version)
    if not m:
        raise KprobesError(
            f"cannot read a kernel version from {version!r}",
            hint="give MAJOR.MINOR, e.g. '6.1' or a uname -r string",
        )
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class KernelFeatures:
    """Rules of one kernel's dynamic-event parser (trace_probe.c and friends).

    Numbers are the kernel's limits: ``max_args`` (MAX_TRACE_ARGS),
    ``max_arg_len`` (MAX_ARGSTR_LEN), ``max_arg_name_len``,
    ``max_event_name_len`` (names must be shorter), ``max_array_len``,
    ``fetch_insn_max`` (the fetch program, which bounds dereference
    nesting), ``param_max_stack`` ($stackN/$argN bound for kprobes:
    THREAD_SIZE / sizeof(long)), ``max_event_size`` (total field bytes, None
    when unchecked).
    """

    version: str | None = None
    has_arg_access: bool = True  # $argN at function entry, 4.20
    detailed_arg_errors: bool = True  # NOFENTRY_ARGS instead of BAD_VAR off entry, 6.5
    return_args: bool = True  # $argN in kretprobes, 6.9
    btf_errors: bool = True  # bare names known as BTF syntax (NOSUP_BTFARG), 6.5
    btf_args: bool = False  # CONFIG_PROBE_EVENTS_BTF_ARGS: names, $arg*, ->field
    typecast: bool = True  # '(' starts a BTF typecast, 6.18
    comm: bool = True  # $comm, 4.x
    immediates: bool = True  # \IMM, 5.7
    immediate_strings: bool = True  # \"str", 5.7
    file_offsets: bool = True  # @+OFFS for uprobes, 5.7
    user_deref: bool = True  # +u / ustring, 5.5
    arrays: bool = True  # TYPE[N], 4.20
    char_type: bool = True  # 5.14
    ustring_type: bool = True  # 5.5
    symstr_type: bool = True  # 6.2
    dentry_types: bool = True  # %pd / %pD (kprobes), 6.10
    group_hyphen: bool = True  # '-' in group names, 6.1 (stable backports)
    dot_separator: bool = True  # GROUP.EVENT, 5.15
    logs_too_many_args: bool = True  # TOO_MANY_ARGS logged, 6.15
    rejects_too_many_args: bool = True  # more words refused (E2BIG); before: ignored, 6.5
    logs_need_string_type: bool = True  # NEED_STRING_TYPE; before: silent EINVAL, 6.5
    retval_prefix: bool = True  # '$retval...' matched as a prefix (BTF fields), 6.5
    shifted_type_errors: bool = True  # type errors after +OFFS( move with it, 6.5
    bad_var_message: str = _FIXED_BAD_VAR  # typo fixed by 6.18
    maxact_type_message: str = _NEW_MAXACT  # 6.5
    max_args: int = 128
    max_arg_len: int = 63
    max_arg_name_len: int = 32
    max_event_name_len: int = 64
    max_array_len: int = 64
    fetch_insn_max: int = 16
    param_max_stack: int = 2048
    max_event_size: int | None = 3072  # MAX_PROBE_EVENT_SIZE, stable fix (6.1.y, 6.12.y)
    kretprobe_maxactive_max: int = 4096
    func_entry_offset_max: int = 0  # 4 on x86 kernels with IBT (endbr64)
    dentry_name_offset: int = 0x28  # offsetof(struct dentry, d_name.name)
    file_dentry_offset: int = 0x48  # offsetof(struct file, f_path.dentry): 0x18 before 6.12
    reserved_names: tuple[str, ...] = _RESERVED

    @property
    def types(self) -> frozenset[str]:
        """Type names find_fetch_type() knows (bitfields and arrays aside)."""
        out = set(BASIC_TYPES)
        if self.char_type:
            out.add("char")
        if self.ustring_type:
            out.add("ustring")
        if self.symstr_type:
            out.add("symstr")
        return frozenset(out)

    @classmethod
    def latest(cls) -> KernelFeatures:
        """The newest upstream behaviour this module models (6.18, BTF arguments on)."""
        return cls.for_version("6.18")

    @classmethod
    def permissive(cls) -> KernelFeatures:
        """Everything on, no limits that matter: what ``parse()`` accepts."""
        return cls(version=None, btf_args=True, max_event_size=None)

    @classmethod
    def for_version(cls, version: str) -> KernelFeatures:
        """Preset for an upstream MAJOR.MINOR (a ``uname -r`` string works too).

        Distribution kernels backport fixes; prefer :meth:`from_readme`.
        """
        v = _version_tuple(version)

        def at(major: int, minor: int) -> bool:
            return v >= (major, minor)

        return cls(
            version=f"{v[0]}.{v[1]}",
            has_arg_access=at(4, 20),
            detailed_arg_errors=at(6, 5),
            rejects_too_many_args=at(6, 5),
            logs_need_string_type=at(6, 5),
            retval_prefix=at(6, 5),
            shifted_type_errors=at(6, 5),
            return_args=at(6, 9),
            btf_errors=at(6, 5),
            btf_args=at(6, 5),
            typecast=at(6, 18),
            comm=True,
            immediates=at(5, 7),
            immediate_strings=at(5, 7),
            file_offsets=at(5, 7),
            user_deref=at(5, 5),
            arrays=at(4, 20),
            char_type=at(6, 5),  # not in 6.1.158's README, in 6.12's
            ustring_type=at(5, 5),
            symstr_type=at(6, 1),  # 6.2 upstream, in 6.1.y stable
            dentry_types=at(6, 10),
            group_hyphen=at(6, 1),
            dot_separator=at(5, 15),
            logs_too_many_args=at(6, 15),
            # the typo is fixed in 6.1.y and 6.12.y stable too; older series unverified
            bad_var_message=_FIXED_BAD_VAR if at(6, 1) else _TYPO_BAD_VAR,
            maxact_type_message=_NEW_MAXACT if at(6, 5) else _OLD_MAXACT,
            max_event_size=3072 if at(6, 1) else None,
            # struct file was reordered in 6.12 (f_path moved from 0x10 to 0x40)
            file_dentry_offset=0x48 if at(6, 12) else 0x18,
            reserved_names=_RESERVED if at(6, 1) else _RESERVED[:4] + _RESERVED[5:],
        )

    @classmethod
    def from_readme(cls, text: str, release: str | None = None) -> KernelFeatures:
        """Derive the rules from the text of ``/sys/kernel/tracing/README``.

        ``release`` (``uname -r``) decides what the README cannot show; without
        it the newest behaviour is assumed for those.
        """
        base = cls.for_version(release) if release else cls.latest()
        lines = text.splitlines()
        fetch = _section(lines, "fetcharg:")
        types = _section(lines, "type:")
        if not fetch:
            return base
        ret_line = next((ln for ln in lines if "kernel return probes support" in ln), "")
        has_arg = "$arg<N>" in fetch
        type_words = set(re.findall(r"[%\w<>]+", types))
        return replace(
            base,
            has_arg_access=has_arg,
            return_args=has_arg and "$arg<N>" in ret_line,
            btf_args="<argname>" in fetch,
            typecast=base.typecast or "(structname)" in fetch,
            comm="$comm" in fetch,
            immediates="\\imm-value" in fetch,
            immediate_strings="imm-string" in fetch,
            user_deref="[u]<offset>" in fetch,
            arrays="<array-size>" in types,
            char_type="char" in type_words,
            ustring_type="ustring" in type_words,
            symstr_type="symstr" in type_words,
            dentry_types="%pd" in types,
        )

    def with_version_note(self, version: str) -> KernelFeatures:
        """A copy labelled with ``version`` (informational only)."""
        return replace(self, version=version)


def _section(lines: list[str], label: str) -> str:
    """The README block that starts at ``label`` and runs until the next label."""
    out: list[str] = []
    inside = False
    for ln in lines:
        if not inside:
            if label in ln:
                inside = True
                out.append(ln.split(label, 1)[1])
            continue
        if re.match(r"^\s*[\w ()]+:\s", ln) or not ln.startswith(("\t", " ")):
            break
        out.append(ln)
    return "\n".join(out)
