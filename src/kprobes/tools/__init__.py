"""kprobes.tools."""
