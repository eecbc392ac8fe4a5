"""onnxruntime backend (CPUExecutionProvider). Imports onnxruntime lazily; never imports torch."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgestill.errors import InputError, RuntimeFailure
from edgestill.artifact import Artifact
from edgestill.runtimes.base import RUNTIMES, Runtime, RuntimeOptions, Session, check_file_shapes

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OnnxRuntimeSession(Session):
    """One onnxruntime InferenceSession; ``invoke`` is ``sess.run(names, feed)``."""

    runtime = "onnxruntime"

    def __init__(self, sess: Any, artifact: Artifact, settings: dict[str, Any]):
        self._sess = sess
        super().__init__(artifact, settings)
        self._output_names = [s.name for s in self.output_specs]  # manifest order: finish() zips with it
        in_file, out_file = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
        if sorted(in_file) != sorted(s.name for s in self.input_specs) or not set(self._output_names) <= set(out_file):
            raise InputError(
                f"{artifact.model_path} has inputs {in_file} and outputs {out_file} but its manifest names "
                f"{[s.name for s in self.input_specs]} and {self._output_names}; the file and manifest disagree. "
                "Re-export the artifact (do not mix files and manifests of different exports)."
            )
        check_file_shapes(artifact, {i.name: i.shape for i in sess.get_inputs()})

    def invoke(self, feed: dict[str, np.ndarray]) -> None:
        self._last = self._sess.run(self._output_names, feed)  # onnxruntime returns the outputs from the call

    def collect(self) -> list[np.ndarray]:
        return self._last


@RUNTIMES.register("onnxruntime")
class OnnxRuntime(Runtime):
    """onnxruntime on the CPU execution provider, sequential execution."""

    name = "onnxruntime"
    formats = ("onnx",)

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def load(self, artifact: Artifact, options: RuntimeOptions) -> OnnxRuntimeSession:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = options.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[options.graph_optimization])
        try:
            sess = ort.InferenceSession(str(artifact.model_path), sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeFailure(f"onnxruntime could not load {artifact.model_path}: {exc}") from exc
        settings = {
            "runtime": self.name,
            "runtime_version": ort.__version__,
            "threads": options.threads,
            "inter_op_threads": options.inter_op_threads,
            "graph_optimization": options.graph_optimization,
            "execution_mode": "sequential",
            "providers": sess.get_providers(),
        }
        return OnnxRuntimeSession(sess, artifact, settings)
