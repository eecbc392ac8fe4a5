"""Which optional extra provides which library, and the error that names it when the library is missing.

The core install (``pip install edgestill``) has the CLI, the runner, the results store, the gate and the report, and
no torch. Runtimes and the compress/export stack are extras::

    pip install 'edgestill[onnx]'       # onnxruntime + onnx: what a device needs to run .onnx files
    pip install 'edgestill[openvino]'   # OpenVINO IR (.xml/.bin)
    pip install 'edgestill[tflite]'     # ai-edge-litert, the LiteRT interpreter for .tflite
    pip install 'edgestill[compress]'   # torch and the converters: distill, quantize, export, demo, run
    pip install 'edgestill[all]'        # everything

A command that reaches a library its extra did not install fails with exit 2 and the ``pip install`` line to run
(:func:`missing_extra_error`, applied by ``edgestill.cli.run_command`` and the runner), never an ImportError traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from edgestill.errors import InputError

EXTRAS: dict[str, str] = {
    "torch": "compress",
    "onnxscript": "compress",
    "nncf": "compress",
    "litert_torch": "compress",
    "ai_edge_quantizer": "compress",
    "torchao": "compress",
    "sklearn": "compress",
    "safetensors": "compress",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "openvino": "openvino",
    "ai_edge_litert": "tflite",
    "tflite_runtime": "tflite",
}
"""Top-level import name -> the extra that installs it."""

DISTRIBUTIONS: dict[str, str] = {"sklearn": "scikit-learn", "ai_edge_litert": "ai-edge-litert",
                                 "ai_edge_quantizer": "ai-edge-quantizer", "litert_torch": "litert-torch"}
"""Import names whose pip distribution is spelt differently."""

_USES = {"compress": "torch and the converters, for distill, quantize, export, run and demo",
         "onnx": "onnxruntime and onnx, for .onnx files", "openvino": "OpenVINO, for IR files (.xml/.bin)",
         "tflite": "the LiteRT interpreter, for .tflite files"}


def install_hint(extra: str) -> str:
    """The command that installs ``extra``, e.g. ``pip install 'edgestill[compress]'``."""
    return f"pip install 'edgestill[{extra}]'"


def extra_error(module: str, *, purpose: str | None = None) -> InputError:
    """The error for the missing library ``module`` (a top-level import name in :data:`EXTRAS`)."""
    top = module.split(".")[0]
    extra = EXTRAS.get(top, "all")
    dist = DISTRIBUTIONS.get(top, top)
    what = f" for {purpose}" if purpose else ""
    return InputError(
        f"{dist} is not installed{what}: the core install of edgestill leaves it out. It comes with the "
        f"'{extra}' extra ({_USES.get(extra, 'every optional library')}): run {install_hint(extra)} "
        f"(or {install_hint('all')} for everything)."
    )


def require(module: str, *, purpose: str | None = None) -> ModuleType:
    """Import ``module``, or raise the error that names the extra to install.

    Raises:
        InputError: the module's top-level package is not installed (exit 2, with the ``pip install`` line).
    """
    top = module.split(".")[0]
    if importlib.util.find_spec(top) is None:
        raise extra_error(top, purpose=purpose)
    return importlib.import_module(module)


def missing_extra_error(exc: BaseException) -> InputError | None:
    """For an exception caused by an optional library that is not installed, the error naming its extra; else None.

    Follows ``__cause__``/``__context__`` (a library may wrap the ImportError). Only a library that is really absent
    counts: an ImportError inside an installed library (a broken install, a missing system library) is not an extra's
    fault and gives None.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            top = exc.name.split(".")[0]
            if top in EXTRAS and _absent(top):
                return extra_error(top)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def _absent(top: str) -> bool:
    try:
        return importlib.util.find_spec(top) is None
    except (ImportError, ValueError):  # a meta-path finder that refuses it, or a half-imported module
        return True
