"""kprobes.engines."""
