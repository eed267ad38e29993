"""One exception hierarchy for everything kprobes reports to a user.

Every error carries a one-paragraph ``message`` (what is wrong), an optional
``hint`` (what to do) and an ``exit_code`` for the CLI.  Syntax errors also carry
the offending text and a 0-based position so that a caret line can be drawn
under it, exactly as the kernel's ``error_log`` does.

Nothing below the CLI prints or exits: code raises one of these and the CLI
formats it once (``kprobes: error: ...``).
"""

from __future__ import annotations

from typing import Optional, Sequence

__all__ = [
    "KprobesError",
    "ProbeSyntaxError",
    "NotTraceableError",
    "PermissionProblem",
    "TracefsUnavailable",
    "FeatureMissing",
    "KernelRefused",
    "BTFError",
    "ELFError",
    "BPFError",
    "VerifierError",
    "EngineArmError",
    "caret_line",
]


def caret_line(text: str, position: int, width: int = 1) -> str:
    """Return ``text`` and a second line with ``^`` under ``position`` (0-based).

    ``width`` > 1 draws ``^~~~`` under a span.  Tabs in ``text`` are kept in the
    padding so that the caret lines up in a terminal.
    """
    position = max(0, min(position, len(text)))
    pad = "".join("\t" if c == "\t" else " " for c in text[:position])
    mark = "^" + "~" * max(0, width - 1)
    return f"{text}\n{pad}{mark}"


class KprobesError(Exception):
    """Base class: a user-facing problem, never a bug.

    ``message`` says what is wrong, ``hint`` what to do about it.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def format(self) -> str:
        """The full text the CLI prints after ``kprobes: error: ``."""
        out = self.message
        if self.hint:
            out += f"\nhint: {self.hint}"
        return out

    def __str__(self) -> str:
        return self.format()


class ProbeSyntaxError(KprobesError):
    """A definition the kernel would refuse (or did refuse).

    ``text`` is the definition, ``position`` the 0-based offset of the offending
    character (as the kernel's ``error_log`` caret), ``kernel_message`` the
    kernel's own wording (e.g. ``"Invalid fetch argument"``).
    ``from_kernel`` is True when the verdict came from a real write to tracefs.
    """

    exit_code = 2

    def __init__(
        self,
        kernel_message: str,
        text: str,
        position: int,
        *,
        hint: Optional[str] = None,
        from_kernel: bool = False,
        command: str = "probe",
    ) -> None:
        self.kernel_message = kernel_message
        self.text = text
        self.position = position
        self.from_kernel = from_kernel
        self.command = command
        where = "kernel" if from_kernel else "check"
        msg = f"{kernel_message} (at position {position}, {where})\n{caret_line(text, position)}"
        super().__init__(msg, hint=hint)


class KernelRefused(ProbeSyntaxError):
    """The kernel refused a write and ``error_log`` explained it."""


class NotTraceableError(KprobesError):
    """A function that exists in the source but cannot be probed."""

    def __init__(
        self,
        name: str,
        reason: str,
        *,
        suggestions: Sequence[str] = (),
        hint: Optional[str] = None,
    ) -> None:
        self.name = name
        self.reason = reason
        self.suggestions = tuple(suggestions)
        msg = f"cannot probe {name!r}: {reason}"
        if self.suggestions:
            msg += "\nclose names: " + ", ".join(self.suggestions)
        super().__init__(msg, hint=hint)


class PermissionProblem(KprobesError):
    """Not allowed to touch tracefs (not root, no CAP_PERFMON, lockdown...)."""

    exit_code = 77


class TracefsUnavailable(KprobesError):
    """tracefs is not mounted and cannot be mounted."""

    exit_code = 69


class FeatureMissing(KprobesError):
    """The running kernel lacks a feature (CONFIG_KPROBE_EVENTS, hist triggers...)."""

    exit_code = 69


class BTFError(KprobesError):
    """BTF missing, malformed, or a name/path that does not resolve."""

    def __init__(
        self,
        message: str,
        *,
        text: Optional[str] = None,
        position: Optional[int] = None,
        width: int = 1,
        hint: Optional[str] = None,
    ) -> None:
        self.text = text
        self.position = position
        if text is not None and position is not None:
            message = f"{message}\n{caret_line(text, position, width)}"
        super().__init__(message, hint=hint)


class ELFError(KprobesError):
    """A binary that cannot be read or a symbol that is not in it."""


class BPFError(KprobesError):
    """A ``bpf(2)`` or ``perf_event_open(2)`` call the kernel refused.

    ``errno`` is the kernel's error number (None when the refusal was ours).
    """

    def __init__(self, message: str, *, errno: Optional[int] = None,
                 hint: Optional[str] = None) -> None:
        self.errno = errno
        super().__init__(message, hint=hint)


class VerifierError(BPFError):
    """The BPF verifier rejected a program; ``log`` is its whole log, ``message``
    ends with the log's last lines (where the verifier stopped and why)."""

    exit_code = 2

    def __init__(self, message: str, log: str, *, errno: Optional[int] = None,
                 hint: Optional[str] = None, tail: int = 12) -> None:
        self.log = log
        lines = [ln for ln in log.rstrip("\n").splitlines() if ln.strip()]
        self.last_lines = tuple(lines[-tail:])
        if self.last_lines:
            message = message + "\nverifier log (last lines):\n" + "\n".join(
                "  " + ln for ln in self.last_lines)
        super().__init__(message, errno=errno, hint=hint)


class EngineArmError(KprobesError):
    """An engine could not arm a program it had planned (the BPF verifier refused it):
    nothing has run yet, so ``--engine auto`` runs the program on the next engine."""
