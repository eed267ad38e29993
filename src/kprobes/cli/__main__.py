"""``python -m kprobes.cli``."""

from .main import entry

entry()
