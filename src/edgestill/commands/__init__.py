"""CLI commands, one module each; each registers itself on ``edgestill.cli.app``."""
