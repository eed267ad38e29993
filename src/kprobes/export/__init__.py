"""Exports of kprobes' results to other tools' formats (pure code, stdlib only).

* :mod:`.folded` — stack-keyed maps as folded stacks (``root;child;leaf count``);
* :mod:`.flamegraph` — folded stacks to an interactive SVG flame graph;
* :mod:`.perfetto` — a recording to a Chrome JSON trace or a Perfetto protobuf trace;
* :mod:`.prometheus` — maps as Prometheus metric families (needs ``prometheus_client``).

Nothing here is imported on the plain ``kprobes -e`` path: each module is
imported by the command that needs it.
"""
