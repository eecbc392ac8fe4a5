"""OpenVINO backend on the CPU plugin (or the GPU / NPU one as a named accelerator); precision hint, threads and
streams are always set where the plugin takes them. Never imports torch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgestill.errors import InputError, RuntimeFailure
from edgestill.artifact import Artifact
from edgestill.runtimes.base import RUNTIMES, Runtime, RuntimeOptions, Session, accelerator_record, check_file_shapes


@contextlib.contextmanager
def no_telemetry() -> Iterator[None]:
    """Silence OpenVINO/NNCF usage telemetry for the duration of the block (edgestill runs offline).

    Without an opt-out file, ``import openvino``, ov.convert_model and nncf post events to Google Analytics
    from a forked process: a network call, and a fork while other threads (litert-torch's JAX) run. The
    telemetry backends' ``send`` is a no-op inside this block only.
    """
    try:
        import openvino_telemetry  # noqa: F401
        from openvino_telemetry.backend import backend_ga, backend_ga4  # noqa: F401  (register the backends)
        from openvino_telemetry.backend.backend import BackendRegistry
    except ImportError:  # telemetry not installed: nothing to silence
        yield
        return
    saved = [(cls, vars(cls)["send"]) for cls in BackendRegistry.r.values() if "send" in vars(cls)]
    try:
        for cls, _ in saved:
            cls.send = lambda self, message: None
        yield
    finally:
        for cls, send in saved:
            cls.send = send


class OpenVINOSession(Session):
    """A compiled model and one infer request created at load; ``invoke`` is a sync infer."""

    runtime = "openvino"
    clock_source = "openvino InferRequest.latency"

    def __init__(self, compiled: Any, artifact: Artifact, settings: dict[str, Any]):
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        super().__init__(artifact, settings)
        self._ports = [_find_port(compiled.outputs, s.name, artifact.model_path) for s in self.output_specs]
        self._in_ports = [_find_port(compiled.inputs, s.name, artifact.model_path) for s in self.input_specs]
        check_file_shapes(artifact, {s.name: _dims(p) for s, p in zip(self.input_specs, self._in_ports)})
        self._out_index = [list(compiled.outputs).index(p) for p in self._ports]
        self._bound: Any = None

    def _feed(self, prepared: dict[str, np.ndarray]) -> list[tuple[Any, Any]]:
        """ov.Tensors built once, before timing."""
        import openvino as ov

        return [(port, ov.Tensor(np.ascontiguousarray(prepared[spec.name]))) for port, spec in zip(self._in_ports, self.input_specs)]

    def invoke(self, feed: list[tuple[Any, Any]]) -> None:
        # A feed is bound to the request once: the steady state of a benchmark is infer() alone, as in
        # benchmark_app. (request.infer(dict) converts the dict and builds an OVDict of every output on each
        # call: ~55 us of Python per call measured here; set_tensor/get_tensor by port ~10 us more.)
        request = self._request
        if feed is not self._bound:
            for port, tensor in feed:
                request.set_tensor(port, tensor)
            self._bound = feed  # held, so its id cannot be reused by a later feed
        request.infer()

    def runtime_latency_ms(self) -> float:
        # OpenVINO times each infer inside the C++ request (ms); benchmark_app's latency figures are these values
        return float(self._request.latency)

    def collect(self) -> list[np.ndarray]:
        return [self._request.get_output_tensor(i).data.copy() for i in self._out_index]


def _dims(port: Any) -> list[Any] | None:
    """A port's dims (None for a dynamic one), or None when even its rank is dynamic."""
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        return None
    return [d.get_length() if d.is_static else None for d in shape]


def _find_port(ports: Any, name: str, path: Any) -> Any:
    for p in ports:
        if name in p.get_names():
            return p
    raise InputError(
        f"{path} has no tensor {name!r}, which its manifest names (it has {[sorted(p.get_names()) for p in ports]}); "
        "the file and manifest disagree. Re-export the artifact (do not mix files and manifests of different exports)."
    )


OV_DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU"}
"""Accelerator -> OpenVINO device name (``GPU`` also matches ``GPU.0``, ``GPU.1`` ...)."""


def ov_device(accelerator: str, available: list[str]) -> str:
    """The OpenVINO device for ``accelerator``, refusing one this machine does not have.

    Raises:
        InputError: no device of that kind in ``available`` (``ov.Core().available_devices``, listed in the message).
    """
    device = OV_DEVICES[accelerator]
    if not any(d == device or d.startswith(device + ".") for d in available):
        raise InputError(
            f"accelerator {accelerator!r} needs OpenVINO's {device} device, which this machine does not have "
            f"(OpenVINO sees: {', '.join(available) or 'no devices'}). Install the {device} driver, or pick one of "
            f"{', '.join(a for a, d in OV_DEVICES.items() if d in {x.split('.')[0] for x in available})} with --accelerator."
        )
    return device


def _plugin_config(device: str, options: RuntimeOptions) -> dict[str, Any]:
    """The compile config: every setting the plugin takes, set explicitly (threads are the CPU plugin's only)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": options.ov_performance_hint}
    if device in ("CPU", "GPU"):
        config["INFERENCE_PRECISION_HINT"] = options.ov_inference_precision
        config["NUM_STREAMS"] = options.ov_streams
    if device == "CPU":
        config["INFERENCE_NUM_THREADS"] = options.threads
    return config


def _execution_devices(compiled: Any, fallback: str) -> list[str]:
    """The devices the compiled model runs on (its ``EXECUTION_DEVICES`` property), or ``[fallback]`` if unreadable."""
    try:
        devices = compiled.get_property("EXECUTION_DEVICES")
    except Exception:  # noqa: BLE001 - a plugin without the property
        return [fallback]
    return [str(d) for d in devices] if isinstance(devices, (list, tuple)) else [str(devices)]


@RUNTIMES.register("openvino")
class OpenVINO(Runtime):
    """OpenVINO CPU plugin (GPU / NPU on request) with explicit INFERENCE_PRECISION_HINT (default f32, not the CPU's
    bf16)."""

    name = "openvino"
    formats = ("openvino", "onnx")
    accelerators = tuple(OV_DEVICES)

    def version(self) -> str:
        with no_telemetry():
            import openvino

        return openvino.get_version()

    def load(self, artifact: Artifact, options: RuntimeOptions) -> OpenVINOSession:
        with no_telemetry():
            import openvino as ov

        self.check_accelerator(options.accelerator)
        core = ov.Core()
        device = ov_device(options.accelerator, list(core.available_devices))
        config = _plugin_config(device, options)
        try:
            compiled = core.compile_model(str(artifact.model_path), device, config)
        except Exception as exc:  # openvino raises RuntimeError subclasses of its own
            raise RuntimeFailure(f"OpenVINO could not compile {artifact.model_path} for {device}: {exc}") from exc
        executed = _execution_devices(compiled, device)
        first = executed[0].split(".")[0]  # "GPU.0" -> "GPU"
        ran = next((a for a, d in OV_DEVICES.items() if d == first), first.lower())
        settings = {
            "runtime": self.name,
            "runtime_version": ov.get_version(),
            "threads": options.threads,
            "inference_precision": options.ov_inference_precision,
            "performance_hint": options.ov_performance_hint,
            "streams": options.ov_streams,
            "device": device,
            "config": dict(config),
            "accelerator": accelerator_record(options.accelerator, ran, execution_devices=executed),
        }
        return OpenVINOSession(compiled, artifact, settings)
