"""Runtime backends behind one protocol. Importing this registers them; each imports its library lazily."""

from edgestill.runtimes.base import DEFAULT_RUNTIME, RUNTIMES, Runtime, RuntimeOptions, Session, get_runtime, load

__all__ = ["DEFAULT_RUNTIME", "RUNTIMES", "Runtime", "RuntimeOptions", "Session", "get_runtime", "load"]
