"""A runtime for tests only: onnxruntime, except that it aborts the process (SIGABRT, no JSON) on loading an artifact
whose name starts with "crash", as a runtime crashing in native code would. The runner imports it through
``EDGESTILL_RUNTIME_PLUGINS=tests.runtimes.crashing_runtime``; nothing in the package knows it exists."""

from __future__ import annotations

import os

from edgestill.runtimes.base import RUNTIMES
from edgestill.runtimes.onnxruntime import OnnxRuntime

NAME = "crash-test"


@RUNTIMES.register(NAME)
class CrashingRuntime(OnnxRuntime):
    name = NAME

    def load(self, artifact, options):  # type: ignore[no-untyped-def]
        session = super().load(artifact, options)
        if artifact.name.startswith("crash"):
            os.abort()
        return session
