"""Value classes without :mod:`dataclasses`: the same decorator, cheaper at import.

``import dataclasses`` pulls in :mod:`inspect` and :mod:`ast` and every
``@dataclass`` compiles four or five methods with ``exec()`` while the module
is imported.  For ``kprobes -e`` that was a fifth of the time to the first
event on the host and most of a second in a slow VM, for classes a run mostly
never instantiates.

:func:`dataclass` here gives the same classes (the subset of options this
package uses):

* fields are the class's annotations in MRO order (a base's fields first),
  ``ClassVar`` annotations excluded; :func:`field` takes ``default``,
  ``default_factory``, ``init``, ``compare`` and ``repr``;
* ``__init__`` takes the fields by position or name and runs ``__post_init__``;
  it is compiled for the class the first time an instance is made, so classes
  that are only imported cost no ``exec()``, and hot classes still get
  straight-line code;
* ``eq`` (``__eq__`` over the compared fields, same class only), ``__hash__`` as
  :mod:`dataclasses` decides it (frozen and eq: hashed by the compared fields;
  eq and not frozen: unhashable; eq=False: inherited), ``repr``, ``frozen``
  (assignment raises :class:`FrozenInstanceError`); methods written in the
  class body are kept;
* :func:`fields`, :func:`replace`, :func:`asdict`, :func:`is_dataclass`, and
  ``__dataclass_fields__`` (name -> :class:`Field`) for code that walks fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Tuple, TypeVar, overload

__all__ = ["dataclass", "field", "fields", "replace", "asdict", "is_dataclass", "Field",
           "FrozenInstanceError", "MISSING"]  # fmt: skip

_T = TypeVar("_T")
_C = TypeVar("_C")

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_kw: object) -> Callable[[_T], _T]:
        return lambda f: f


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen value class."""


class Field:
    """One field: its name and options (what ``dataclasses.Field`` says of it)."""

    __slots__ = ("name", "default", "default_factory", "init", "compare", "repr")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING,
                 init: bool = True, compare: bool = True, repr: bool = True) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.compare = compare
        self.repr = repr

    def __repr__(self) -> str:
        return f"Field(name={self.name!r})"


@overload
def field(*, default: _T, init: bool = ..., compare: bool = ..., repr: bool = ...) -> _T: ...
@overload
def field(*, default_factory: Callable[[], _T], init: bool = ..., compare: bool = ...,
          repr: bool = ...) -> _T: ...
@overload
def field(*, init: bool = ..., compare: bool = ..., repr: bool = ...) -> Any: ...
def field(*, default: Any = MISSING, default_factory: Any = MISSING, init: bool = True,
          compare: bool = True, repr: bool = True) -> Any:
    """A field with a default (or a factory of one), left out of ``__init__`` / ``==`` / repr."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, init, compare, repr)


def _is_classvar(annotation: object) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))
    return repr(annotation).startswith("typing.ClassVar")


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _compile_init(cls: type, flds: Tuple[Field, ...], frozen: bool) -> Callable[..., None]:
    """Straight-line ``__init__`` for ``cls`` (one ``exec()``, made on first use)."""
    params = ["__self"]
    body = []
    env: Dict[str, Any] = {"__MISSING": MISSING, "__set": object.__setattr__}
    for i, f in enumerate(flds):
        value = f.name
        if f.init:
            if f.default is not MISSING:
                env[f"__d{i}"] = f.default
                params.append(f"{f.name}=__d{i}")
            elif f.default_factory is not MISSING:
                env[f"__f{i}"] = f.default_factory
                params.append(f"{f.name}=__MISSING")
                value = f"(__f{i}() if {f.name} is __MISSING else {f.name})"
            else:
                params.append(f.name)
        elif f.default is not MISSING:
            env[f"__d{i}"] = f.default
            value = f"__d{i}"
        elif f.default_factory is not MISSING:
            env[f"__f{i}"] = f.default_factory
            value = f"__f{i}()"
        else:
            continue
        body.append(f"__set(__self, {f.name!r}, {value})" if frozen
                    else f"__self.{f.name} = {value}")
    if getattr(cls, "__post_init__", None) is not None:
        body.append("__self.__post_init__()")
    # Parameters with defaults may not precede ones without: a base with defaults
    # and a subclass field without one is refused by dataclasses as well.
    src = (f"def __init__({', '.join(params)}) -> None:\n    "
           + ("\n    ".join(body) or "pass") + "\n")
    ns: Dict[str, Any] = {}
    exec(src, env, ns)  # noqa: S102 - source built from field names only
    init: Callable[..., None] = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _put(cls: type, name: str, value: object) -> None:
    setattr(cls, name, value)


def _process(cls: type, *, init: bool, eq: bool, repr: bool, frozen: bool) -> type:
    own = cls.__dict__.get("__annotations__", {})
    all_fields: Dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        base_fields = base.__dict__.get("__dataclass_fields__")
        if base_fields:
            all_fields.update(base_fields)
    for name, annotation in own.items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(value)
        f.name = name
        all_fields[name] = f
        if isinstance(value, Field):
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
    flds = tuple(all_fields.values())
    body = cls.__dict__
    _put(cls, "__dataclass_fields__", all_fields)
    _put(cls, "__match_args__", tuple(f.name for f in flds if f.init))

    if init and "__init__" not in body:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            real = _compile_init(cls, flds, frozen)
            _put(cls, "__init__", real)
            real(self, *args, **kwargs)

        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        _put(cls, "__init__", __init__)

    compared = tuple(f.name for f in flds if f.compare)
    if eq:
        if "__eq__" not in body:
            def __eq__(self: Any, other: object) -> bool:
                if other.__class__ is not self.__class__:
                    return NotImplemented
                return tuple([getattr(self, n) for n in compared]) == tuple(
                    [getattr(other, n) for n in compared])

            _put(cls, "__eq__", __eq__)
        if "__hash__" not in body or body["__hash__"] is None:
            if frozen:
                def __hash__(self: Any) -> int:
                    return hash(tuple([getattr(self, name) for name in compared]))

                _put(cls, "__hash__", __hash__)
            else:
                _put(cls, "__hash__", None)
    if repr and "__repr__" not in body:
        shown = tuple(f.name for f in flds if f.repr)
        qualname = cls.__qualname__

        def __repr__(self: Any) -> str:
            inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
            return f"{qualname}({inner})"

        _put(cls, "__repr__", __repr__)
    if frozen:
        _put(cls, "__setattr__", _frozen_setattr)
        _put(cls, "__delattr__", _frozen_delattr)
    return cls


@overload
def dataclass(cls: type[_C], /) -> type[_C]: ...
@overload
def dataclass(*, init: bool = ..., eq: bool = ..., repr: bool = ...,
              frozen: bool = ...) -> Callable[[type[_C]], type[_C]]: ...
@dataclass_transform(field_specifiers=(field, Field))
def dataclass(cls: Any = None, /, *, init: bool = True, eq: bool = True, repr: bool = True,
              frozen: bool = False) -> Any:
    """Make ``cls`` a value class over its annotated fields (see the module docstring)."""

    def wrap(c: type[_C]) -> type[_C]:
        return _process(c, init=init, eq=eq, repr=repr, frozen=frozen)

    return wrap if cls is None else wrap(cls)


def is_dataclass(obj: object) -> bool:
    """True for a value class or an instance of one."""
    return hasattr(obj if isinstance(obj, type) else type(obj), "__dataclass_fields__")


def fields(obj: object) -> Tuple[Field, ...]:
    """The fields of a value class or instance, in order."""
    flds = getattr(obj, "__dataclass_fields__", None)
    if flds is None:
        raise TypeError("fields() needs a value class or instance")
    return tuple(flds.values())


def replace(obj: _T, **changes: Any) -> _T:
    """A copy of ``obj`` with ``changes`` (fields with ``init=False`` cannot change)."""
    for f in fields(obj):
        if not f.init:
            if f.name in changes:
                raise ValueError(f"field {f.name!r} is init=False and cannot be replaced")
            continue
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


def _asdict(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _asdict(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[_asdict(v) for v in value])
    if isinstance(value, (list, tuple)):
        return type(value)(_asdict(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_asdict(k), _asdict(v)) for k, v in value.items())
    return value


def asdict(obj: object) -> Dict[str, Any]:
    """The fields of ``obj`` as a dict, recursing into value classes, lists, tuples, dicts."""
    if not is_dataclass(obj) or isinstance(obj, type):
        raise TypeError("asdict() needs a value class instance")
    result: Dict[str, Any] = _asdict(obj)
    return result
