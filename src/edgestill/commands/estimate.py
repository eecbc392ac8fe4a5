"""``edgestill estimate``: a latency estimate for a device profile, from the exported ONNX graph (never a measurement)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgestill.cli import app, echo_json, run_command


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  edgestill estimate --model mobilenet_v2 --device raspberry-pi-5 --runtime litert --threads 4\n"
        "  edgestill estimate demo-out/artifacts/student-onnx-int8-static.manifest.json --device pixel-8 --json\n"
        "  edgestill estimate model.onnx --device host --runtime onnxruntime --precision fp32\n"
        "  edgestill estimate --model resnet18 --device jetson-orin-nano --db .edgestill/results.db\n"
        "  edgestill estimate llm-out/student-onnx-int4-weight.manifest.json --device raspberry-pi-5   # decode tokens/s\n"
        "  edgestill estimate --params-billions 1.1 --weight-bits 8.5 --device raspberry-pi-5 --json\n\n"
        "The figure is estimated, not measured: a per-layer roofline (MACs and bytes per node of the ONNX graph, an\n"
        "efficiency per op class, the memory bandwidth, fixed per-node and per-call costs) fitted on published\n"
        "latencies, or on the device's own microbenchmarks after `edgestill devices calibrate`. The low/high band is\n"
        "the estimator's cross-validated error (10th to 90th percentile). ARTIFACT is an edgestill manifest or a bare\n"
        ".onnx; for a .tflite or OpenVINO artifact the ONNX export of the same model in the same folder is read.\n"
        "A generative artifact (an exported causal LM), or a model given by --params-billions and --weight-bits, gets\n"
        "a decode tokens/s estimate instead: bytes read per token (weights, plus the KV cache at the mean position of\n"
        "a 128/128 generation) against the memory bandwidth, with an efficiency fitted on published LLM throughputs\n"
        "(perf/llm_estimate.py prints its leave-one-out error), at the runtime's default thread count.\n"
        "Exit codes: 0 ok; 2 bad input (unknown model or device, a runtime the device does not list)."
    )
)
def estimate(
    artifact: Path | None = typer.Argument(None, help="An artifact manifest or a bare .onnx file."),
    model: str | None = typer.Option(None, "--model", help="A zoo model name instead of an artifact (e.g. mobilenet_v2)."),
    device: str = typer.Option(..., "--device", help="A device profile id (see `edgestill devices list`)."),
    runtime: str | None = typer.Option(None, "--runtime", help="onnxruntime, litert or openvino (default: the "
                                       "artifact format's own; for --model the device's first listed runtime)."),
    precision: str | None = typer.Option(None, "--precision", help="fp32, fp16 or int8 (default: the artifact's; "
                                         "fp32 for --model)."),
    threads: int = typer.Option(1, "--threads", "-t", help="CPU threads."),
    accelerator: str = typer.Option("cpu", "--accelerator", help="cpu, or an accelerator the device lists for the runtime."),
    params_billions: float | None = typer.Option(None, "--params-billions", help="A generative model by size: billions "
                                                 "of parameters (with --weight-bits): decode tokens/s."),
    weight_bits: float | None = typer.Option(None, "--weight-bits", help="Bits stored per weight, scales included "
                                             "(16 fp16, 8.5 q8_0, 4.5 4-bit with group-32 scales)."),
    db: Path | None = typer.Option(None, "--db", help="Also store the estimate in this SQLite results store (kept apart "
                                   "from measurements; `edgestill report` lists it as estimated)."),
    json_out: bool = typer.Option(False, "--json", help="Print the estimate record as JSON."),
) -> None:
    """Estimate latency on a device profile from the model's graph: kind 'estimated', with a low/high band."""

    def body() -> int:
        from edgestill.devices.profiles import load_profile
        from edgestill.devices.estimator import estimate_artifact, estimate_zoo_model
        from edgestill.devices.llm_estimate import estimate_llm_artifact, estimate_llm_size, is_llm_artifact
        from edgestill.errors import InputError

        by_size = params_billions is not None or weight_bits is not None
        if by_size and (params_billions is None or weight_bits is None or artifact is not None or model is not None):
            raise InputError("--params-billions and --weight-bits go together and replace ARTIFACT and --model. "
                             "Example: edgestill estimate --params-billions 1.1 --weight-bits 8.5 --device raspberry-pi-5")
        if not by_size and (artifact is None) == (model is None):
            raise InputError("give either an ARTIFACT (a manifest or an .onnx file) or --model NAME, not "
                             f"{'both' if artifact is not None else 'neither'}. "
                             "Example: edgestill estimate --model mobilenet_v2 --device raspberry-pi-5")
        if threads < 1:
            raise InputError(f"--threads must be a positive integer (CPU threads), got {threads}.")
        if precision is not None and (by_size or (artifact is not None and is_llm_artifact(artifact))):
            raise InputError(f"--precision {precision!r} does not apply to a generative model's decode estimate: it "
                             "reads the weights' own bits (the artifact's, or --weight-bits). Drop --precision.")
        profile = load_profile(device)
        if by_size:
            record = estimate_llm_size(profile, params_billions=params_billions, weight_bits=weight_bits,
                                       runtime=runtime or "litert")
        elif artifact is not None and is_llm_artifact(artifact):
            record = estimate_llm_artifact(artifact, profile, runtime=runtime)
        elif model is not None:
            record = estimate_zoo_model(model, profile, runtime=runtime, precision=precision or "fp32",
                                        threads=threads, accelerator=accelerator)
        else:
            record = estimate_artifact(artifact, profile, runtime=runtime, precision=precision, threads=threads,
                                       accelerator=accelerator)
        if db is not None:
            from edgestill.benchmarks.store import ResultsStore
            from edgestill.host import git_ref

            what = (f"--params-billions {params_billions:g} --weight-bits {weight_bits:g}" if by_size
                    else f"--model {model}" if model is not None else str(artifact))
            with ResultsStore(db) as store:
                store.add_run(f"estimate {what} --device {device}", git_ref=git_ref(), measurements=[record])
        _render(record, json_out=json_out)
        return 0

    code = run_command(body)
    if code:
        raise typer.Exit(code)


def _render(record: Any, *, json_out: bool) -> None:
    from edgestill.record import RESULTS_SCHEMA, RESULTS_SCHEMA_VERSION

    est = record.provenance["estimator"]
    if json_out:
        echo_json({"schema": RESULTS_SCHEMA, "schema_version": RESULTS_SCHEMA_VERSION, "note": "estimated, not measured",
                   "measurements": [record.to_dict()]})
        return
    if est.get("fit") == "published-decode":
        _render_decode(record)
        return
    error = est.get("error") or {}
    quality = (f"{error['within_25_percent']:.0%} within ±25%, median |error| {error['median_abs_percent']:.0f}% "
               f"({error.get('method', '')}, n={error.get('n')})" if "within_25_percent" in error else "not stated")
    lines = [
        f"{record.artifact} on {record.provenance['device']['id']} ({record.runtime}/{record.settings['accelerator']}, "
        f"{record.precision}, {record.threads} thr): estimated, not measured",
        f"  estimate   {record.settings['estimate_ms']:.3f} ms  (low {record.low_ms:.3f}, high {record.high_ms:.3f})",
        f"  kind       {record.kind}",
        f"  fit        {est['fit']}: {est['basis']}",
        f"  error      {quality}",
    ]
    typer.echo("\n".join(lines))


def _render_decode(record: Any) -> None:
    """A decode estimate: tokens/s with its band, the bytes behind it and the fit's leave-one-out error."""
    est, s = record.provenance["estimator"], record.settings
    error, basis = est["error"], est["basis"]
    typer.echo("\n".join([
        f"{record.artifact} on {record.provenance['device']['id']} ({record.runtime}, {record.precision}): "
        "estimated, not measured",
        f"  decode     {s['decode_tokens_per_s']:.3g} tokens/s  (low {s['low_tokens_per_s']:.3g}, high "
        f"{s['high_tokens_per_s']:.3g}); {record.settings['estimate_ms']:.3g} ms per token",
        f"  bytes      {basis['bytes_per_token'] / 1e6:.3g} MB per token ({basis['weight_bytes'] / 1e6:.3g} MB weights + "
        f"{basis['kv_bytes'] / 1e6:.3g} MB KV cache) at {basis['bandwidth_gbs']:g} GB/s",
        f"  fit        efficiency {est['efficiency']:.3g} ({est['efficiency_class']}) on published LLM throughputs",
        f"  error      {error['within_25_percent']:.0%} within ±25%, median |error| {error['median_abs_percent']:.0f}% "
        f"({error['method']}, n={error['n']})",
    ]))
