"""Measure artifacts on an inventory device, whatever its transport: the one call ``bench --device`` and the lab use.

    from edgestill.devices.inventory import load_inventory
    from edgestill.devices.remote import bench_on_device

    inv = load_inventory("devices.yaml")
    records = bench_on_device(inv.get("pi5-lab-1"), ["out/student-onnx-fp32.manifest.json"], [1, 4])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgestill.devices.transport import TRANSPORTS, failure_exit_code
from edgestill.errors import InputError
from edgestill.record import Measurement
from edgestill.runtimes.generate import DEFAULT_GEN_TOKENS, DEFAULT_PROMPT_TOKENS, check_lengths

if TYPE_CHECKING:
    from edgestill.devices.inventory import DeviceEntry
    from edgestill.runtimes.harness import BenchOptions

__all__ = ["bench_on_device", "failure_exit_code"]


def bench_on_device(
    entry: DeviceEntry,
    artifacts: Sequence[str | Path],
    thread_counts: Sequence[int] = (1,),
    *,
    bench: BenchOptions | None = None,
    eval_data: str | Path | None = None,
    runtime: str | None = None,
    accelerator: str | None = None,
    timeout_s: float = 300.0,
    progress: Callable[[int, int, str], None] | None = None,
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
    gen_tokens: int = DEFAULT_GEN_TOKENS,
) -> list[Measurement]:
    """Measure every artifact × thread count on ``entry`` through its transport (``local``, ``ssh``, ``adb``).

    A generative artifact (``source.llm`` in its manifest) is timed on the device at ``prompt_tokens`` /
    ``gen_tokens`` (a seeded synthetic prompt, greedy new tokens); its record's ``prompt_tokens`` and
    ``generated_tokens`` say what was timed (a context too short for both shrinks them, same ratio). ``adb`` devices
    run LiteRT's benchmark_model, which cannot drive a generative model: such an artifact is refused there.

    Never raises for a device that fails: each cell it could not measure is a ``kind="failed"`` record with
    ``settings["failure"]`` (unreachable, auth, host_key, missing_runtime, timeout, crash, bad_input, error). Every
    record carries ``provenance["device"] = {"id", "profile", "transport", ...}``. Exit code of a run:
    :func:`edgestill.devices.transport.failure_exit_code`.

    Raises:
        InputError: bad local input (no artifacts, a bad thread count, an artifact that does not load or whose files
            changed, eval data that is not a file, an unknown runtime), found before anything is sent.
        ConfigError: a timing length below its minimum (:func:`edgestill.runtimes.generate.check_lengths`).
    """
    check_lengths(prompt_tokens, gen_tokens)
    if not artifacts:
        raise InputError("no artifacts to measure; pass one or more .manifest.json paths.")
    if not thread_counts or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in thread_counts):
        raise InputError(f"thread counts must be whole numbers >= 1, got {list(thread_counts)}.")
    if eval_data is not None and not Path(eval_data).is_file():
        raise InputError(f"eval data {eval_data} is not a file; pass an .npz with x and y (or teacher_logits).")
    _check_accelerator(entry, accelerator, runtime, artifacts)
    fn = TRANSPORTS.get(entry.transport)
    return fn(entry, [Path(a) for a in artifacts], list(thread_counts), bench=bench,
              eval_data=None if eval_data is None else Path(eval_data), runtime=runtime, accelerator=accelerator,
              timeout_s=timeout_s, progress=progress, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens)


def _check_accelerator(entry: DeviceEntry, accelerator: str | None, runtime: str | None,
                       artifacts: Sequence[str | Path]) -> None:
    """Refuse, before anything is sent, an accelerator the device's profile does not list for the runtime a cell
    will use (the runtime given, else each artifact format's own).

    Raises:
        InputError: the profile's ``runtimes`` block does not offer ``accelerator`` there (the ones it offers named).
    """
    if accelerator in (None, "cpu"):
        return
    from edgestill.devices.profiles import load_profile
    from edgestill.runtimes.inspect import SUFFIX_FORMAT

    offered = load_profile(entry.profile).runtimes or {}
    own = {"onnx": "onnxruntime", "tflite": "litert", "openvino": "openvino"}
    names = {runtime} if runtime else {own.get(SUFFIX_FORMAT.get(_model_suffix(Path(a)), ""), "") for a in artifacts}
    for name in sorted(n for n in names if n):
        if accelerator not in offered.get(name, ()):
            listed = ", ".join(f"{r}: {', '.join(a)}" for r, a in offered.items()) or "none"
            raise InputError(f"device {entry.name!r} (profile {entry.profile}) does not offer --accelerator "
                             f"{accelerator} on {name}; its profile lists {listed}. Pick one of those, or add it to "
                             "the profile's runtimes block if the device has it.")


def _model_suffix(path: Path) -> str:
    """The model file's suffix for a manifest (``x.manifest.json`` → the format recorded in it) or a model file."""
    if path.name.endswith(".manifest.json"):
        import json

        try:
            fmt = json.loads(path.read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            return ""
        return {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}.get(fmt, "")
    return path.suffix
