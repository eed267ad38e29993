"""kprobes.backends.tracefs."""
