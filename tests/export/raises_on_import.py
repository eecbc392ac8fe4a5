"""A module whose import fails with an error other than ImportError: ``--model tests.export.raises_on_import:build``."""

raise ValueError("CONFIG_PATH is not set")


def build():  # never reached
    raise AssertionError("unreachable")
