"""kprobes.events."""
