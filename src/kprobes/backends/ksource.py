"""Kernel source text for ``probe -L`` and lazy ``;PATTERN`` lines, found the way ``perf probe`` finds it.

Where the text comes from, in order:

* ``-s DIR`` (perf's ``--source``): ``DIR/PATH``, dropping leading components of
  ``PATH`` until a file is found (perf's ``find_source_path``);
* the DWARF path itself when absolute, else ``comp_dir/PATH`` (perf's rule);
* Debian's ``linux-source-X.Y`` package, matched to the vmlinux by the version in
  its ``linux_banner`` ("... Debian 6.1.192-3 ..."): the tree that
  ``scripts/install-kernel-debug`` extracts once into
  ``$KPROBES_VM_CACHE/src/VERSION/linux-source-X.Y/``, a tree extracted by hand in
  ``/usr/src/linux-source-X.Y/``, or the package's ``/usr/src/linux-source-X.Y.tar.xz``
  itself.  The tarball is one xz stream of ~1.3 GB: streaming to one member costs
  about 11 s, so the member read is kept in the user cache
  (``~/.cache/kprobes/ksrc/...``) and the next ``-L`` of that file opens it directly.

Also perf's lazy-line matcher (``strlazymatch``: a glob over the whole line,
whitespace ignored on both sides, ``*``, ``?``, ``[...]``, ``\\`` escapes) and the
``-L`` output layout (``%7d  `` before a probeable line, nine spaces before others,
the text exactly as in the file, two more lines after the last probeable one).
"""

from __future__ import annotations

import os
import re
from typing import List, Optional, Sequence, Tuple

from .._record import dataclass
from ..errors import KprobesError

__all__ = ["SourceText", "banner_version", "find_source", "lazy_match", "lazy_lines"]

VM_CACHE = "/var/cache/kprobes-vm"


@dataclass(frozen=True)
class SourceText:
    """One source file: the path shown (as perf shows it), its lines (with their newlines), a note."""

    path: str
    lines: Tuple[str, ...]
    note: Optional[str] = None


def banner_version(banner: str) -> Optional[Tuple[str, str]]:
    """(Debian package version, X.Y) from a ``linux_banner`` such as '... Debian 6.1.192-3 (2026-11-26)'."""
    found = list(re.finditer(r"Debian (\d+)\.(\d+)\.(\S+)", banner))  # the last: the first is gcc's
    if not found:
        return None
    m = found[-1]
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", f"{m.group(1)}.{m.group(2)}"


def _read(path: str) -> Optional[Tuple[str, ...]]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return tuple(data.decode("utf-8", "replace").splitlines(keepends=True))


def _with_prefix(prefix: str, raw: str) -> Optional[str]:
    """perf's search with ``-s``: PREFIX/RAW, then RAW without its first component, and so on."""
    rest = raw
    while True:
        cand = os.path.join(prefix, rest.lstrip("/"))
        if os.path.isfile(cand) and os.access(cand, os.R_OK):
            return cand
        i = rest.find("/", 1)
        if i < 0:
            return None
        rest = rest[i:]


def _dpkg_version(package: str, status: str = "/var/lib/dpkg/status") -> Optional[str]:
    try:
        with open(status, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    for block in text.split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", block, re.M) and re.search(
            r"^Status: .*installed$", block, re.M
        ):
            m = re.search(r"^Version: (\S+)$", block, re.M)
            return m.group(1) if m else None
    return None


def _from_tarball(tarball: str, member: str, version: str) -> Optional[str]:
    """Extract one member of the linux-source tarball into the user cache (once) and return its path."""
    from ..btf.cache import cache_dir

    cdir = cache_dir()
    st = os.stat(tarball)
    key = f"{version}-{st.st_size}-{int(st.st_mtime)}"
    dest = os.path.join(cdir, "ksrc", key, member) if cdir else None
    if dest and os.path.isfile(dest):
        return dest
    import tarfile

    try:
        with tarfile.open(tarball, "r|*") as tf:
            for m in tf:
                if m.name.lstrip("./") != member:
                    continue
                fobj = tf.extractfile(m)
                if fobj is None:
                    return None
                data = fobj.read()
                break
            else:
                return None
    except (OSError, tarfile.TarError, EOFError) as e:
        raise KprobesError(f"cannot read {tarball}: {e}", hint="reinstall the linux-source package") from None
    if dest is None:
        import tempfile

        dest = os.path.join(tempfile.mkdtemp(prefix="kprobes-ksrc-"), os.path.basename(member))
    try:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = f"{dest}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except OSError:
        return None
    return dest


def find_source(raw: str, comp_dir: str, source_dirs: Sequence[str] = (), banner: Optional[str] = None,
                cache: Optional[str] = None, usr_src: str = "/usr/src") -> Optional[SourceText]:  # fmt: skip
    """The text of the source file ``raw`` (a DWARF path), or None when no copy is found."""
    if source_dirs:
        for d in source_dirs:
            p = _with_prefix(d, raw)
            if p is not None:
                lines = _read(p)
                if lines is not None:
                    return SourceText(p, lines)
        return None
    if raw.startswith("/"):
        lines = _read(raw)
        if lines is not None:
            return SourceText(raw, lines)
    elif comp_dir.startswith("/"):
        p = os.path.join(comp_dir, raw)
        lines = _read(p)
        if lines is not None:
            return SourceText(p, lines)
    ver = banner_version(banner or "")
    if ver is None:
        return None
    version, xy = ver
    top = f"linux-source-{xy}"
    rel = raw.lstrip("/")
    cache = cache if cache is not None else os.environ.get("KPROBES_VM_CACHE", VM_CACHE)
    for tree, pkg_version in ((os.path.join(cache, "src", version, top), version),
                              (os.path.join(usr_src, top), _dpkg_version(top))):  # fmt: skip
        p = os.path.join(tree, rel)
        lines = _read(p)
        if lines is not None:
            return SourceText(p, lines, _version_note(top, pkg_version, version))
    tarball = os.path.join(usr_src, f"{top}.tar.xz")
    if os.path.isfile(tarball):
        pkg_version = _dpkg_version(top)
        p2 = _from_tarball(tarball, f"{top}/{rel}", pkg_version or "unknown")
        if p2 is not None:
            lines = _read(p2)
            if lines is not None:
                return SourceText(p2, lines, _version_note(top, pkg_version, version))
    return None


def _version_note(pkg: str, have: Optional[str], want: str) -> Optional[str]:
    if have is None or have == want:
        return None
    return f"the source is {pkg} {have} but the vmlinux was built from {want}: line numbers may differ"


def source_hint(xy: Optional[str]) -> str:
    pkg = f"linux-source-{xy}" if xy else "linux-source-X.Y"
    return (f"give the kernel source tree with -s DIR, or install Debian's {pkg} "
            "(scripts/install-kernel-debug extracts the VM kernels' into its cache)")  # fmt: skip


# ---------------------------------------------------------------------- lazy lines


def _charclass(pat: str, i: int, c: str) -> Tuple[bool, int]:
    """Match ``c`` against the class starting at ``pat[i]`` (after '['): (matched, index after ']'), or (False, -1)."""
    complement = False
    if i < len(pat) and pat[i] == "!":
        complement = True
        i += 1
    ok = True
    if i < len(pat) and pat[i] == c:  # a first ']' or '-' is an ordinary character
        i += 1
    else:
        i += 1
        found = False
        while i < len(pat) and pat[i] != "]":
            if pat[i] == "-" and i + 1 < len(pat) and pat[i + 1] != "]":
                if pat[i - 1] <= c <= pat[i + 1]:
                    found = True
                    break
                if pat[i - 1] > pat[i + 1]:
                    return False, -1
                i += 2
            else:
                if pat[i] == c:
                    found = True
                    i += 1
                    break
                i += 1
        if not found:
            if i >= len(pat):
                return False, -1
            ok = False
    while i < len(pat) and pat[i] != "]":
        i += 1
    if i >= len(pat):
        return False, -1
    return (not ok if complement else ok), i + 1


def lazy_match(line: str, pat: str) -> bool:
    """perf's ``strlazymatch``: glob match of the whole line, ignoring whitespace in both."""
    return _glob(line, 0, pat, 0)


def _glob(s: str, i: int, pat: str, j: int) -> bool:
    while i < len(s) and j < len(pat) and pat[j] != "*":
        if s[i].isspace():
            i += 1
            continue
        if pat[j].isspace():
            j += 1
            continue
        if pat[j] == "?":
            i += 1
            j += 1
            continue
        if pat[j] == "[":
            ok, nj = _charclass(pat, j + 1, s[i])
            if not ok:
                return False
            i += 1
            j = nj
            continue
        if pat[j] == "\\":
            j += 1
            if j >= len(pat):
                return False
        if s[i] != pat[j]:
            return False
        i += 1
        j += 1
    if j < len(pat) and pat[j] == "*":
        while j < len(pat) and pat[j] == "*":
            j += 1
        if j == len(pat):
            return True
        while i < len(s):
            if _glob(s, i, pat, j):
                return True
            i += 1
    return i == len(s) and j == len(pat)


def lazy_lines(src: SourceText, pattern: str) -> List[int]:
    """The (1-based) numbers of the lines matching ``pattern``."""
    return [n for n, text in enumerate(src.lines, 1) if lazy_match(text.rstrip("\n"), pattern)]


# ---------------------------------------------------------------------- -L output


def format_source_range(header: str, src: SourceText, start: int, end: Optional[int], lines: Sequence[int],
                        offset: int) -> str:  # fmt: skip
    """perf's ``__show_line_range``: lines ``start``.. with the probeable ``lines`` numbered (``- offset``)."""
    out: List[str] = [header + "\n"]
    text = src.lines
    n = len(text)

    def show(ln: int, num: bool) -> bool:
        if ln > n:
            return False
        out.append((f"{ln - offset:7d}  " if num else " " * 9) + text[ln - 1])
        return True

    ln = start
    for want in sorted(lines):
        while want > ln:
            if not show(ln, False):
                return "".join(out)
            ln += 1
        if not show(ln, True):
            return "".join(out)
        ln += 1
    last = ln + 2 if end is None else end
    while ln <= last and show(ln, False):
        ln += 1
    body = "".join(out)
    return body if body.endswith("\n") else body + "\n"
