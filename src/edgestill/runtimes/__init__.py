"""Runtime backends behind one protocol. The registry and the name -> backend-module table live in
:mod:`edgestill.runtimes.base`; a backend module (and its library) is imported on first use of its name."""

from edgestill.runtimes.base import (BACKEND_MODULES, DEFAULT_RUNTIME, RUNTIMES, Runtime, RuntimeOptions, Session,
                                     get_runtime, load, runtime_names)

__all__ = ["BACKEND_MODULES", "DEFAULT_RUNTIME", "RUNTIMES", "Runtime", "RuntimeOptions", "Session", "get_runtime",
           "load", "runtime_names"]
