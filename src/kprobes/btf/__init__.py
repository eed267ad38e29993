"""BTF (BPF Type Format) in pure Python: kernel types, signatures, member offsets.

Quick use::

    from kprobes import btf
    vmlinux = btf.load_vmlinux()
    print(btf.format_func(vmlinux, "do_sys_openat2"))
    btf.compile_btf_arg(vmlinux, "tcp_connect", "sk->__sk_common.skc_dport", "x86_64")
    # 'skc_dport=+12(%di):u16'

Opening vmlinux is cheap (a record index, cached on disk; types are decoded on
demand).  The rendering, path and fetcharg helpers are imported lazily so that
``import kprobes.btf`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .btf import BTF, FuncParam, FuncSignature
    from .ctype import CType, parse_ctype
    from .fetcharg import compile_btf_arg, fetch_type, fetcharg_for_path
    from .header import BTFHeader
    from .load import load_file, load_module, load_vmlinux
    from .path import PathStep, ResolvedPath, find_member, resolve_path
    from .render import format_func, format_struct, type_name
    from .types import (
        Array,
        Composite,
        Const,
        Datasec,
        DeclTag,
        Enum,
        Enum64,
        EnumValue,
        Float,
        Func,
        FuncProto,
        Fwd,
        Int,
        Member,
        Param,
        Ptr,
        RefType,
        Restrict,
        Struct,
        Type,
        Typedef,
        TypeTag,
        Union,
        Var,
        VarSecinfo,
        Void,
        Volatile,
    )

__all__ = [
    "BTF", "BTFHeader", "FuncParam", "FuncSignature",
    "load_vmlinux", "load_module", "load_file",
    "Type", "Void", "Int", "Ptr", "Array", "Member", "Composite", "Struct", "Union",
    "EnumValue", "Enum", "Enum64", "Fwd", "RefType", "Typedef", "Volatile", "Const",
    "Restrict", "TypeTag", "Func", "Param", "FuncProto", "Var", "VarSecinfo", "Datasec",
    "Float", "DeclTag",
    "CType", "parse_ctype",
    "PathStep", "ResolvedPath", "resolve_path", "find_member",
    "compile_btf_arg", "fetcharg_for_path", "fetch_type",
    "format_func", "format_struct", "type_name",
]  # fmt: skip

# everything is imported on first use: ``import kprobes.btf.cache`` (the BPF
# feature cache) must not decode the type classes
_LAZY = {
    "BTF": "btf",
    "FuncParam": "btf",
    "FuncSignature": "btf",
    "BTFHeader": "header",
    "load_file": "load",
    "load_module": "load",
    "load_vmlinux": "load",
    "Array": "types",
    "Composite": "types",
    "Const": "types",
    "Datasec": "types",
    "DeclTag": "types",
    "Enum": "types",
    "Enum64": "types",
    "EnumValue": "types",
    "Float": "types",
    "Func": "types",
    "FuncProto": "types",
    "Fwd": "types",
    "Int": "types",
    "Member": "types",
    "Param": "types",
    "Ptr": "types",
    "RefType": "types",
    "Restrict": "types",
    "Struct": "types",
    "Type": "types",
    "Typedef": "types",
    "TypeTag": "types",
    "Union": "types",
    "Var": "types",
    "VarSecinfo": "types",
    "Void": "types",
    "Volatile": "types",
    "CType": "ctype",
    "parse_ctype": "ctype",
    "PathStep": "path",
    "ResolvedPath": "path",
    "resolve_path": "path",
    "find_member": "path",
    "compile_btf_arg": "fetcharg",
    "fetcharg_for_path": "fetcharg",
    "fetch_type": "fetcharg",
    "format_func": "render",
    "format_struct": "render",
    "type_name": "render",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
