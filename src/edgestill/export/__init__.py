"""Float exporters (onnx, tflite, openvino), artifact manifests and parity validation.

Names load lazily: ``import edgestill.export`` does not import torch or any format library.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgestill.artifact import Artifact, TensorSpec

# Eager on purpose (numpy only): the function ``validate`` must win over the submodule of the same name.
from edgestill.export.validate import ParityReport, Threshold, Tolerances, validate

_LAZY = {
    "export": "edgestill.export.api",
    "export_onnx_file": "edgestill.export.api",
    "get_exporter": "edgestill.export.api",
    "localize_divergence": "edgestill.export.divergence",
    "Divergence": "edgestill.export.divergence",
    "ExportConfig": "edgestill.export.api",
    "ExportResult": "edgestill.export.api",
    "BackendSpec": "edgestill.export.base",
    "EXPORTERS": "edgestill.export.base",
    "export_precisions": "edgestill.export.base",
    "state_dict_sha256": "edgestill.export.base",
}

__all__ = ["Artifact", "ParityReport", "TensorSpec", "Threshold", "Tolerances", "validate", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgestill.export' has no attribute {name!r}")
