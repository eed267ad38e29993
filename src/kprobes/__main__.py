"""``python -m kprobes``."""

from .cli.main import entry

entry()
