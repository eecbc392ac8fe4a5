"""A module that calls ``sys.exit(0)`` when imported (a script run as a module): ``--model tests.export.exits_on_import:build``."""

import sys

sys.exit(0)


def build():  # never reached
    raise AssertionError("unreachable")
