"""kprobes.bpf: a pure-Python eBPF toolkit (no I/O) for code generators and backends.

- :mod:`.insn`    ``Insn`` model, constructors, ``encode``/``decode``/``validate``, ISA levels
- :mod:`.asm`     ``Assembler`` (labels, map relocations, stack/register helpers) -> ``Program``
- :mod:`.disasm`  kernel/bpftool-style ``disassemble``/``format_insn`` and the ``parse`` inverse
- :mod:`.helpers` ``Helper`` ids, ``helper_name``, ``prototype``
- :mod:`.maps`    ``MapSpec``, ``MapType``, ``ProgType``, ``AttachType``

The names below are imported lazily: ``import kprobes.bpf`` loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "Insn": ".insn", "Reg": ".insn", "BPFError": ".insn", "BPFDecodeError": ".insn",
    "R0": ".insn", "R1": ".insn", "R2": ".insn", "R3": ".insn", "R4": ".insn",
    "R5": ".insn", "R6": ".insn", "R7": ".insn", "R8": ".insn", "R9": ".insn",
    "R10": ".insn", "encode": ".insn", "decode": ".insn", "validate": ".insn",
    "isa_version": ".insn", "min_kernel": ".insn",
    "Assembler": ".asm", "Program": ".asm", "StackFrame": ".asm", "RegPool": ".asm",
    "Reloc": ".asm",
    "disassemble": ".disasm", "format_insn": ".disasm", "parse": ".disasm",
    "parse_program": ".disasm",
    "Helper": ".helpers", "helper_name": ".helpers", "helper_id": ".helpers",
    "prototype": ".helpers", "HelperProto": ".helpers",
    "MapSpec": ".maps", "MapType": ".maps", "ProgType": ".maps", "AttachType": ".maps",
}

__all__ = [
    "Assembler",
    "AttachType",
    "BPFDecodeError",
    "BPFError",
    "Helper",
    "HelperProto",
    "Insn",
    "MapSpec",
    "MapType",
    "ProgType",
    "Program",
    "R0",
    "R1",
    "R10",
    "R2",
    "R3",
    "R4",
    "R5",
    "R6",
    "R7",
    "R8",
    "R9",
    "Reg",
    "RegPool",
    "Reloc",
    "StackFrame",
    "decode",
    "disassemble",
    "encode",
    "format_insn",
    "helper_id",
    "helper_name",
    "isa_version",
    "min_kernel",
    "parse",
    "parse_program",
    "prototype",
    "validate",
]

if TYPE_CHECKING:
    from .asm import Assembler, Program, RegPool, Reloc, StackFrame
    from .disasm import disassemble, format_insn, parse, parse_program
    from .helpers import Helper, HelperProto, helper_id, helper_name, prototype
    from .insn import (
        R0,
        R1,
        R2,
        R3,
        R4,
        R5,
        R6,
        R7,
        R8,
        R9,
        R10,
        BPFDecodeError,
        BPFError,
        Insn,
        Reg,
        decode,
        encode,
        isa_version,
        min_kernel,
        validate,
    )
    from .maps import AttachType, MapSpec, MapType, ProgType


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
