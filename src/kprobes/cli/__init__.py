"""kprobes.cli."""
