"""bpftrace 0.17's argument and environment reading (kprobes.cli.btcompat), without a kernel.

The expected texts are bpftrace v0.17.0's, as it printed them on a host
(tests/host/test_bpftrace_cli_host.py compares against the binary itself).
"""

from __future__ import annotations

from typing import List

import pytest

from kprobes.cli.btcompat import (
    BpftraceError,
    ast_dump,
    parse_args,
    parse_pid,
    read_environment,
    ring_size,
)


def test_operands_and_options_mix_as_getopt_long() -> None:
    o = parse_args(["prog.bt", "5", "-q", "x", "--", "-7", "-q"])
    assert o.quiet and o.source == "prog.bt" and o.params == ["5", "x", "-7", "-q"]
    o = parse_args(["-qe", "BEGIN {}", "a", "b"])
    assert o.quiet and o.program == "BEGIN {}" and o.source is None and o.params == ["a", "b"]
    o = parse_args(["-eBEGIN{}", "-dd", "-kk", "-lv", "-Bnone", "-fjson"])
    assert (o.program, o.debug, o.helper_check, o.listing, o.verbose, o.buffering, o.fmt) == \
        ("BEGIN{}", 2, 2, True, 1, "none", "json")
    o = parse_args(["--include=a.h", "--include", "b.h", "--unsa", "--no-w", "-I", "/x", "-"])
    assert o.includes == ["a.h", "b.h"] and o.unsafe and o.no_warnings and o.include_dirs == ["/x"]
    assert o.source == "-" and o.params == []
    o = parse_args(["--engine=tracefs", "--duration", "1.5", "--buffer-size=64", "-e", "x"])
    assert (o.engine, o.duration, o.buffer_size) == ("tracefs", 1.5, 64)


@pytest.mark.parametrize(
    "args, first_line",
    [
        (["-f", "jsonx"], 'ERROR: Invalid output format "jsonx"'),
        (["-B", "foo"], "ERROR: USAGE: -B must be either 'line', 'full', or 'none'."),
        (["-z"], "kprobes: invalid option -- 'z'"),
        (["-qz"], "kprobes: invalid option -- 'z'"),
        (["--bogus"], "kprobes: unrecognized option '--bogus'"),
        (["--in"], "kprobes: option '--in' is ambiguous; possibilities: '--include' '--info'"),
        (["-e"], "kprobes: option requires an argument -- 'e'"),
        (["--include"], "kprobes: option '--include' requires an argument"),
        (["--unsafe=1"], "kprobes: option '--unsafe' doesn't allow an argument"),
        (["-p", "a1111"], "ERROR: pid 'a1111' is not a valid decimal number"),
        (["-p", "0"], "ERROR: pid '0' out of valid pid range [1,4194304]"),
        (["-p", "4194305"], "ERROR: pid '4194305' out of valid pid range [1,4194304]"),
    ],
)
def test_argument_errors_in_bpftrace_words(args: List[str], first_line: str) -> None:
    with pytest.raises(BpftraceError) as e:
        parse_args(args)
    assert e.value.text.splitlines()[0] == first_line
    assert e.value.exit_code == 1
    assert e.value.usage == first_line.startswith("kprobes:")


def test_pid() -> None:
    assert parse_pid("42") == 42 and parse_pid("+7") == 7
    for bad in ("", "0x10", "1e3", "٣"):
        with pytest.raises(BpftraceError):
            parse_pid(bad)


def test_environment_numbers_read_as_stoull() -> None:
    env = read_environment({"BPFTRACE_STRLEN": " 12x", "BPFTRACE_MAP_KEYS_MAX": "+100",
                            "BPFTRACE_MAX_PROBES": "0x10", "BPFTRACE_PERF_RB_PAGES": "8",
                            "BPFTRACE_CAT_BYTES_MAX": "0"})  # fmt: skip
    assert (env.strlen, env.map_keys_max, env.max_probes, env.perf_rb_pages, env.cat_bytes_max) == \
        (12, 100, 0, 8, 0)
    assert env.ignored == [] and env.ignored_line() == ""
    with pytest.raises(BpftraceError, match="Env var 'BPFTRACE_LOG_SIZE' did not contain a valid uint64_t"):
        read_environment({"BPFTRACE_LOG_SIZE": ""})
    with pytest.raises(BpftraceError) as e:
        read_environment({"BPFTRACE_STRLEN": "-1"})
    assert e.value.text.startswith("ERROR: 'BPFTRACE_STRLEN' 18446744073709551615 exceeds the current "
                                   "maximum of 200 bytes.\n")  # fmt: skip
    with pytest.raises(BpftraceError, match=r"did not contain a valid value \(0 or 1\)"):
        read_environment({"BPFTRACE_NO_CPP_DEMANGLE": "yes"})


def test_ignored_variables_named_once() -> None:
    env = read_environment({"BPFTRACE_BTF": "/x.btf", "BPFTRACE_NO_USER_SYMBOLS": "1",
                            "BPFTRACE_NO_CPP_DEMANGLE": "0", "BPFTRACE_CACHE_USER_SYMBOLS": "1",
                            "BPFTRACE_STACK_MODE": "perf", "BPFTRACE_LOG_SIZE": "5"})  # fmt: skip
    names = [n for n, _ in env.ignored]
    assert sorted(names) == ["BPFTRACE_BTF", "BPFTRACE_LOG_SIZE", "BPFTRACE_NO_USER_SYMBOLS",
                             "BPFTRACE_STACK_MODE"]  # fmt: skip
    line = env.ignored_line()
    assert line.count("\n") == 1 and all(line.count(n) == 1 for n in names)


def test_ring_size_is_a_power_of_two_of_pages() -> None:
    for pages in (0, 1, 3, 64, 1 << 30):
        size = ring_size(pages)
        assert size >= 4096 and size & (size - 1) == 0 and size <= 1 << 30


def test_ast_dump_names_nodes_and_values() -> None:
    from kprobes.lang import parse_program

    text = ast_dump(parse_program('BEGIN { @x[1] = count(); printf("%d\\n", 2 + 3); }', "stdin"))
    lines = text.splitlines()
    assert lines[0] == "Program filename='stdin'"
    assert "    target: Map name='x' indexed=True" in lines
    assert "      left: IntLit value=2" in lines
