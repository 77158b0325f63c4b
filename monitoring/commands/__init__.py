"""Command-line command groups, each registered by ``monitoring.cli``."""
