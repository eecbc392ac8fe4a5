"""Exporters (onnx, tflite, openvino), artifact manifests and parity validation.

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
    "export_model": "edgestill.export.api",
    "FLOAT_PRECISIONS": "edgestill.export.api",
    "localize_divergence": "edgestill.export.divergence",
    "Divergence": "edgestill.export.divergence",
    "ExportConfig": "edgestill.export.api",
    "ExportResult": "edgestill.export.api",
    "EXPORT_PRECISIONS": "edgestill.export.api",
    "EXPORTERS": "edgestill.export.exporters",
    "get_exporter": "edgestill.export.exporters",
    "state_dict_sha256": "edgestill.export.exporters",
}

__all__ = ["Artifact", "ParityReport", "TensorSpec", "Threshold", "Tolerances", "validate", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgestill.export' has no attribute {name!r}")
