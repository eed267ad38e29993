"""kprobes.backends."""
