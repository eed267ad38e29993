"""Map values read in expressions (``@n = @n + 1``) and ``str(x, n)``'s length.

Expected values were taken from bpftrace v0.17.0 on the development host:

* ``BEGIN { @n = @n + 1; @n = @n + 1; exit(); }`` prints ``@n: 2``; a map
  read before any assignment is 0 and makes the map an unsigned 64-bit integer
  (``@n = @n - 1`` prints ``@n: 18446744073709551615``);
* ``@m[1] = @m[1] * 2 + 1`` twice prints ``@m[1]: 3``; ``@t = 5; @s = @s + @t``
  twice prints ``@s: 10``; ``@s = @s + @t`` with ``@t`` never assigned is
  ``ERROR: Undefined map: @t``;
* ``str(p, n)`` prints ``n`` characters (``str(filename, 5)`` of
  ``/etc/hostname`` is ``/etc/``), ``n = 0`` an empty string, ``n`` of 64 and
  more 63 characters (BPFTRACE_MAX_STRLEN 64 with its NUL), ``n = -1`` is
  ``ERROR: str: cannot use negative length (-1)``; a computed length (``$n``) cuts
  the same way, and a negative one is a huge unsigned one (63 characters).
"""

from __future__ import annotations

import pytest

from kprobes.btf import BTF
from kprobes.lang import check, parse_program
from kprobes.lang.diagnostics import LangError
from kprobes.lang.typesys import IntType, StringType
from tests.unit.btf_builder import kernel_like
from tests.unit.test_engine_eval import Env


@pytest.fixture(scope="module")
def btf() -> BTF:
    b, _ = kernel_like()
    return BTF(b.build())


def run_begin(body: str) -> str:
    env = Env("BEGIN { " + body + " }")
    env.fire(0, tgid=1)
    return env.exit_text()


def test_map_read_of_itself_starts_at_zero() -> None:
    assert run_begin("@n = @n + 1; @n = @n + 1;").strip() == "@n: 2"


def test_self_referencing_map_is_unsigned_64() -> None:
    assert run_begin("@n = @n - 1;").strip() == f"@n: {(1 << 64) - 1}"
    checked = check(parse_program("BEGIN { @n = @n + 1; }"))
    assert checked.maps["n"].value_type == IntType(64, False)


def test_keyed_map_read_in_expression() -> None:
    assert run_begin("@m[1] = @m[1] * 2 + 1; @m[1] = @m[1] * 2 + 1;").strip() == "@m[1]: 3"


def test_two_maps_in_one_expression() -> None:
    out = run_begin("@t = 5; @s = @s + @t; @s = @s + @t;")
    assert "@s: 10" in out and "@t: 5" in out


def test_absent_key_reads_zero_and_map_assigned_later() -> None:
    env = Env('BEGIN { printf("%d %d\\n", @q[5], @r); @q[1] = 2; @r = 3; $x = @r; printf("%d\\n", $x); }')
    env.fire(0, tgid=1)
    assert env.out.getvalue() == "0 0\n3\n"


def test_maps_typed_through_each_other() -> None:
    out = run_begin("@a = @b; @b = @a + 1;")
    assert "@a: 0" in out and "@b: 1" in out


def test_undefined_map_in_expression_is_an_error() -> None:
    with pytest.raises(LangError) as e:
        check(parse_program("BEGIN { @s = @s + @t; }"))
    assert "Undefined map: @t" in e.value.message


# -- str(x, n) ------------------------------------------------------------------------
LONG = "/etc/" + "x" * 80


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, ""),
        (1, "/"),
        (5, "/etc/"),
        (17, LONG[:17]),
        (63, LONG[:63]),
        (64, LONG[:63]),
        (100, LONG[:63]),
    ],
)
def test_str_n_keeps_n_characters(btf: BTF, n: int, expected: str) -> None:
    env = Env(f'kprobe:do_sys_openat2 {{ printf("[%s]\\n", str(arg1, {n})); }}', btf)
    env.fire(0, {"str_arg1": LONG})
    assert env.out.getvalue() == f"[{expected}]\n"


def test_str_n_of_a_short_string_is_the_whole_string(btf: BTF) -> None:
    env = Env('kprobe:do_sys_openat2 { printf("[%s]\\n", str(arg1, 20)); }', btf)
    env.fire(0, {"str_arg1": "/etc/hostname"})
    assert env.out.getvalue() == "[/etc/hostname]\n"


@pytest.mark.parametrize("n, expected", [(0, ""), (3, "/et"), (5, "/etc/"), (-4, LONG[:63]), (500, LONG[:63])])
def test_str_with_a_computed_length(btf: BTF, n: int, expected: str) -> None:
    env = Env(f'kprobe:do_sys_openat2 {{ $n = {n}; printf("[%s]\\n", str(arg1, $n)); }}', btf)
    env.fire(0, {"str_arg1": LONG})
    assert env.out.getvalue() == f"[{expected}]\n"


def test_str_n_type_and_negative_length() -> None:
    checked = check(parse_program('BEGIN { @s = str(0, 5); }'))
    assert checked.maps["s"].value_type == StringType(6)
    with pytest.raises(LangError) as e:
        check(parse_program('BEGIN { @s = str(0, -1); }'))
    assert "str: cannot use negative length (-1)" in e.value.message


def test_str_n_compares_as_the_prefix(btf: BTF) -> None:
    env = Env('kprobe:do_sys_openat2 /str(arg1, 5) == "/etc/"/ { printf("hit\\n"); }', btf)
    env.fire(0, {"str_arg1": "/etc/hostname"})
    env.fire(0, {"str_arg1": "/tmp/x"})
    assert env.out.getvalue() == "hit\n"
