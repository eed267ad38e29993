"""Integer map keys print as bpftrace 0.17 prints them: signed 64-bit (text and JSON)."""

from __future__ import annotations

import io

from kprobes.agg.text import format_key, key_part_text


def test_uint64_keys_print_signed_narrow_keys_unsigned() -> None:
    assert key_part_text((1 << 64) - 300) == "-300"      # (uint64)-300
    assert key_part_text((1 << 64) - 1) == "-1"
    assert key_part_text((1 << 63) - 1) == str((1 << 63) - 1)
    assert key_part_text((1 << 32) - 300) == "4294966996"  # (uint32)-300
    assert key_part_text("x") == "x"
    assert format_key("@d", ((1 << 64) - 1, 1)) == "@d[-1, 1]"


def test_text_and_json_output_of_a_program() -> None:
    """What bpftrace v0.17.0 printed for the same program on the host."""
    from kprobes.cli.main import Streams, main

    prog = ('BEGIN { @a[(uint64)-300] = 1; @b[(uint32)-300] = 2; '
            '@d[(uint64)18446744073709551615, 1] = 4; exit(); }')
    out, err = io.StringIO(), io.StringIO()
    assert main(["--engine", "tracefs", "-e", prog], Streams(out, err)) == 0, err.getvalue()
    assert "@a[-300]: 1\n@b[4294966996]: 2\n@d[-1, 1]: 4\n" in out.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert main(["--engine", "tracefs", "-f", "json", "-e", prog], Streams(out, err)) == 0
    lines = out.getvalue().splitlines()
    assert '{"type": "map", "data": {"@a": {"-300": 1}}}' in lines
    assert '{"type": "map", "data": {"@d": {"-1,1": 4}}}' in lines
