"""A process that arms probes and waits: tests send it signals or SIGKILL.

usage: python tests/session_child.py MODE DEF...
MODE: wait (loop on events until a signal), raise (a handler raises on the first event;
the parent triggers it), cli (run `kprobes trace DEF...`).
Prints ``armed GROUP`` once the probes are armed.
"""

from __future__ import annotations

import sys


def main() -> int:
    mode, defs = sys.argv[1], sys.argv[2:]
    if mode == "cli":
        from kprobes.cli.main import main as cli_main

        print("armed cli", flush=True)
        return cli_main(["trace", *defs])
    import kprobes

    with kprobes.Session() as s:
        for d in defs:
            s.add(d)
        print(f"armed {s.group}", flush=True)
        if mode == "raise":

            @s.on("*")
            def boom(ev: object) -> None:
                raise RuntimeError("handler failed on purpose")

            s.run(duration=60)
        else:
            for _ in s.events(duration=60):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
