"""Runtime backends behind one protocol. Importing this registers them; each imports its library lazily."""

from edgestill.runtimes import litert, onnxruntime, openvino  # noqa: F401  (register the backends)
from edgestill.runtimes.base import DEFAULT_RUNTIME, RUNTIMES, Runtime, RuntimeOptions, Session, get_runtime, load

__all__ = ["DEFAULT_RUNTIME", "RUNTIMES", "Runtime", "RuntimeOptions", "Session", "get_runtime", "load"]
