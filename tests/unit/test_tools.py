"""kprobes.tools: every tool's program parses; options rewrite the .bt files as documented."""

from __future__ import annotations

import os
from typing import Any, Dict

import pytest

from kprobes.errors import KprobesError
from kprobes.lang import parse_program
from kprobes.tools import (
    HERE,
    TOOLS,
    ToolError,
    add_predicate,
    build,
    get_tool,
    probe_target,
    source,
    trace_probe,
)
from tests.helpers import run_cli

SAMPLE: Dict[str, Dict[str, Any]] = {
    "argdist": {"hist": ["vfs_read:arg2"], "count": ["r::vfs_read:retval"]},
    "trace": {"target": ['do_sys_openat2 "%s", arg2']},
}


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_each_tool_file_and_its_default_program_parse(name: str) -> None:
    t = TOOLS[name]
    parse_program(source(t), t.file)
    parse_program(build(t, SAMPLE.get(name, {})), t.file)


def test_every_bt_file_belongs_to_a_tool_and_ships_as_package_data() -> None:
    files = {f for f in os.listdir(HERE) if f.endswith(".bt")}
    assert files == {t.file for t in TOOLS.values()}
    with open(os.path.join(HERE, "..", "..", "..", "pyproject.toml")) as fh:
        assert '"tools/*.bt"' in fh.read()


def test_generated_example_files_are_what_the_builders_make() -> None:
    # trace.bt and argdist.bt are the programs their header comment's command makes.
    for name in ("trace", "argdist"):
        t = TOOLS[name]
        body = source(t).split("*/\n", 1)[1].lstrip("\n")
        made = build(t, SAMPLE[name]).split("\n", 2)[2]
        assert body == made


def test_options_rewrite_the_program() -> None:
    t = get_tool("funclatency")
    text = build(t, {"target": "do_sys_openat2", "unit": "ms", "comm": "dd", "interval": 2})
    assert "kprobe:do_sys_openat2\n/comm == \"dd\"/\n{" in text
    assert "kretprobe:do_sys_openat2\n/@depth[tid]/" in text
    assert "@msecs = hist((nsecs - @start[tid, $d]) / 1000000);" in text
    assert "interval:s:2\n{\n\ttime(\"%H:%M:%S\\n\");\n\tprint(@msecs);\n\tclear(@msecs);\n}" in text
    parse_program(text)
    text = build(t, {"target": "/bin/true:main", "interval": 0.25})
    assert "uprobe:/bin/true:main\n" in text and "uretprobe:/bin/true:main\n" in text
    assert "interval:ms:250\n" in text
    fc = build(get_tool("funccount"), {"target": "t:syscalls:sys_enter_*", "top": 5, "interval": 1})
    assert fc.count("print(@, 5);") == 2 and "tracepoint:syscalls:sys_enter_*\n" in fc
    parse_program(fc)
    ba = build(get_tool("bigalloc"), {"order": 4, "comm": "x"})
    assert '/(comm == "x") && (arg1 >= 4)/' in ba
    dns = build(get_tool("dnssnoop"), {"port": 853})
    assert dns.count("$port == 853 ") == 2 and "== 53 " not in dns
    assert "(int64)retval < 0" in build(get_tool("opensnoop"), {"failed": True})


def test_add_predicate_combines_with_an_existing_one() -> None:
    text = "kprobe:f\n/arg0 > 1/\n{\n}\nkprobe:g\n{\n}\n"
    assert add_predicate(text, "kprobe:f", "pid == 1") == \
        "kprobe:f\n/(pid == 1) && (arg0 > 1)/\n{\n}\nkprobe:g\n{\n}\n"
    assert add_predicate(text, "kprobe:g", "pid == 1").endswith("kprobe:g\n/pid == 1/\n{\n}\n")


def test_probe_targets() -> None:
    assert probe_target("vfs_read") == ("kprobe:vfs_read", "kretprobe:vfs_read")
    assert probe_target("p::vfs_*") == ("kprobe:vfs_*", "kretprobe:vfs_*")
    assert probe_target("r::vfs_read", ret=True) == ("kretprobe:vfs_read", "")
    assert probe_target("t:sched:sched_switch") == ("tracepoint:sched:sched_switch", "")
    assert probe_target("u:/bin/bash:readline") == ("uprobe:/bin/bash:readline",
                                                    "uretprobe:/bin/bash:readline")
    assert probe_target("/bin/bash:readline")[0] == "uprobe:/bin/bash:readline"
    for bad in ("vfs read", "x:y:z:w", "t:a", "vfs_read;", 'a"b', ""):
        with pytest.raises(ToolError):
            probe_target(bad)
    with pytest.raises(ToolError, match="entry"):
        probe_target("r::vfs_read")


def test_trace_specs_bcc_form() -> None:
    p = trace_probe('do_sys_openat2 "%s", arg2')
    assert p == ('kprobe:do_sys_openat2\n{\n\tprintf("%-7d %-7d %-16s %-16s %s\\n", '
                 'pid, tid, comm, "do_sys_openat2", str(arg1));\n}\n')
    p = trace_probe('r::vfs_read (retval > 0) "read %d bytes", retval')
    assert p.startswith("kretprobe:vfs_read\n/retval > 0/\n") and ", retval);" in p
    p = trace_probe('vfs_* (arg3 > 4096) "%d %s", arg3, comm')
    assert "/arg2 > 4096/" in p and "func, arg2, comm" in p
    assert trace_probe("do_sys_openat2").count("printf") == 1
    for bad, why in (('f "%d %d", arg1', "2 conversions for 1"), ('f "%d", arg0', "from arg1"),
                     ('f (arg1 > 0 "%d", arg1', "unbalanced"), ('f "%d" arg1', "expected ,"),
                     ('f "%d', "not closed")):
        with pytest.raises(ToolError, match=why):
            trace_probe(bad)


def test_bad_options_are_usage_errors() -> None:
    for name, opts in (("bigalloc", {"order": 42}), ("dnssnoop", {"port": 0}),
                       ("opensnoop", {"comm": 'a"b'}), ("opensnoop", {"comm": "x" * 16}),
                       ("funccount", {"target": "vfs_*", "top": 0}),
                       ("funclatency", {"target": "t:sched:sched_switch"}),
                       ("argdist", {}), ("argdist", {"hist": ["vfs_read"]}), ("trace", {})):
        with pytest.raises(KprobesError) as ei:
            build(get_tool(name), opts)
        assert ei.value.exit_code == 2, (name, opts)
    with pytest.raises(ToolError, match="did you mean opensnoop"):
        get_tool("opensnop")


def test_cli_lists_tools_and_shows_help_with_examples() -> None:
    rc, out, err = run_cli(["tools"])
    assert rc == 0, err
    listed = [ln.split()[0] for ln in out.splitlines() if ln.startswith("  ")]
    assert listed == list(TOOLS)
    for name, t in TOOLS.items():
        rc, out, err = run_cli(["tools", name, "--help"])
        assert rc == 0, err
        assert "examples:" in out and t.examples[0][0] in out
        for opt in ("-p PID", "-c CMD", "--duration SECS", "-f {text,json}", "--engine", "-n COMM"):
            assert opt in out, (name, opt)
        assert ("-i SECS" in out) == t.interval


def test_cli_program_and_usage_errors() -> None:
    rc, out, err = run_cli(["tools", "trace", 'do_sys_openat2 "%s", arg2', "--program"])
    assert rc == 0 and "str(arg1)" in out, err
    rc, out, err = run_cli(["tools", "nosuchtool"])
    assert rc == 2 and "no tool 'nosuchtool'" in err
    rc, out, err = run_cli(["tools", "opensnoop", "--bogus"])
    assert rc == 2 and "unrecognized arguments" in err
    rc, out, err = run_cli(["tools", "opensnoop", "--duration", "-1"])
    assert rc == 2 and "--duration" in err
