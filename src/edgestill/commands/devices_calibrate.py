"""``edgestill devices calibrate DEVICE``: time microbenchmarks on a device, refit its profile's roofline, store it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgestill.cli import echo_json, run_command
from edgestill.commands.devices import devices_app


@devices_app.command(
    "calibrate",
    epilog=(
        "\b\nExamples:\n"
        "  edgestill devices calibrate host\n"
        "  edgestill devices calibrate host --runtime onnxruntime,openvino,litert --precision fp32,int8 --threads 1,4\n"
        "  edgestill devices calibrate host --quick --json\n"
        "  edgestill devices calibrate pi5-lab-1 --inventory devices.yaml   # over ssh, with the device's runtimes\n\n"
        "Builds 3x3, 1x1 and depthwise convolutions at several shapes, matmuls, large elementwise copies and tiny\n"
        "call/node-overhead models for each runtime and precision, times each on the device, and fits per\n"
        "(runtime, precision, threads): the efficiency of each op class against the profile's peak MAC/s, the\n"
        "bandwidth efficiency, the per-call and per-node overheads, and their leave-one-shape-out error.\n"
        "The fit is written to OUT_FOLDER/<profile id>.calibration.yaml (other entries there are kept), which\n"
        "the profile loader merges and `edgestill estimate` then uses; the raw micro measurements go to --db.\n"
        "Exit codes: 0 calibrated; 2 bad input (unknown runtime, device or profile, a refused key); 3 a micro\n"
        "cell failed on the device (nothing is written then)."
    ),
)
def calibrate(
    device: str = typer.Argument(..., help="'host' (this machine) or a device name from --inventory."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtimes to calibrate, comma-separated: onnxruntime, openvino, litert."),
    precision: str = typer.Option("fp32", "--precision", help="Precisions, comma-separated: fp32, int8."),
    threads: str = typer.Option("1", "--threads", "-t", help="Thread counts, comma-separated (e.g. 1,4)."),
    quick: bool = typer.Option(False, "--quick", help="Small shapes and short timing: a smoke test or a first look."),
    out_folder: Path = typer.Option(Path(".edgestill/profiles"), "--out-folder",
                                    help="Folder of the calibration file (a folder on the profile search path)."),
    inventory: Path | None = typer.Option(None, "--inventory", help="Inventory file (devices.yaml) naming DEVICE."),
    db: Path = typer.Option(Path(".edgestill/results.db"), "--db", help="SQLite results store for the raw micro timings."),
    json_out: bool = typer.Option(False, "--json", help="Print the fitted entries and the per-micro rows as JSON."),
) -> None:
    """Run microbenchmarks on DEVICE and refit its profile's efficiencies and overheads (stored, with their error)."""

    def body() -> int:
        import os
        import tempfile

        from edgestill.commands.options import parse_int_list
        from edgestill.commands.progress import RichReporter
        from edgestill.commands.streams import library_output_to
        from edgestill.devices.calibrate import calibrate_device, device_measure
        from edgestill.errors import InputError

        runtimes = [r.strip() for r in runtime.split(",") if r.strip()]
        precisions = [p.strip() for p in precision.split(",") if p.strip()]
        thread_counts = parse_int_list(threads, option="--threads")
        kwargs: dict[str, Any] = {}
        if device == "host" and inventory is None:
            profile_id = "host"
        elif inventory is None:
            raise InputError(f"device {device!r} is not 'host': pass --inventory devices.yaml with an entry named "
                             f"{device!r} (its profile, transport and address), or calibrate 'host'.")
        else:
            from edgestill.devices.inventory import load_inventory

            entry = load_inventory(inventory).get(device)
            profile_id = entry.profile
            kwargs["device"] = {"name": entry.name, "transport": entry.transport}
        # the converters and quantizers that build the micro models print a lot (some from C++): it goes to a log
        # kept only when the calibration fails
        fd, log_name = tempfile.mkstemp(prefix="edgestill-calibrate-", suffix=".log")
        os.close(fd)
        log = Path(log_name)
        try:
            with library_output_to(log) as (_, term_err), RichReporter(enabled=not json_out, file=term_err) as rep:
                rep.stage("calibrate")
                progress = lambda i, n, label="": rep.advance(i, n, label)  # noqa: E731
                if inventory is not None:
                    kwargs["measure"] = device_measure(entry, quick=quick, progress=progress)
                result = calibrate_device(profile_id, runtimes=runtimes, precisions=precisions, threads=thread_counts,
                                          out_folder=out_folder, quick=quick, db=db, progress=progress, **kwargs)
        except BaseException:
            if log.stat().st_size:
                typer.echo(f"(what the converters and runtimes printed is in {log})", err=True)
            else:
                log.unlink(missing_ok=True)
            raise
        log.unlink(missing_ok=True)
        if json_out:
            echo_json(result.to_dict())
            return 0
        _render(result)
        return 0

    code = run_command(body)
    if code:
        raise typer.Exit(code)


def _render(result: Any) -> None:
    """One block per fitted entry: efficiencies per op class, bandwidth, fixed terms and the fit's own error."""
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.print(f"[bold]calibration of {escape(result.profile_id)}[/]")
    for e in result.entries:
        eff, err, bw = e["efficiency"], e["error"], e["bandwidth_efficiency"]
        console.print(f"  {escape(e['runtime'])} {escape(e['precision'])} ×{e['threads']}")
        console.print("    efficiency  " + "  ".join(f"{c} {eff[c]:.3f}" for c in ("conv", "conv1x1", "depthwise", "matmul")))
        extra = [f"stem {eff['stem']:.3f}" if "stem" not in (e.get("derived") or {}) and "stem" in eff else "",
                 f"softmax {e['softmax_bandwidth_efficiency']:.2f} of bandwidth"
                 if e.get("softmax_bandwidth_efficiency") else "",
                 f"builtin kernels {e['builtin_ns_per_byte']:.2f} ns/byte" if e.get("builtin_ns_per_byte") else "",
                 f"table lookups {e['builtin_lut_ns_per_byte']:.2f} ns/byte" if e.get("builtin_lut_ns_per_byte") else ""]
        if any(extra):
            console.print("    also        " + "  ".join(x for x in extra if x))
        console.print(f"    bandwidth   {e['achieved_bandwidth_gbs']:.1f} GB/s"
                      + ("" if bw is None else f" ({bw:.2f} of the profile's {e['bandwidth_gbs']:g} GB/s)"))
        console.print(f"    fixed       {e['overhead_ms'] * 1e3:.1f} µs per call, {e['per_node_ms'] * 1e3:.2f} µs per node")
        if err["n"]:
            console.print(f"    error       leave-one-shape-out median {err['median_abs_percent']:.1f}%, "
                          f"{err['within_25_percent']:.0%} within ±25% (n {err['n']})")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    where = f"; raw micro timings in run {result.run_id} of {escape(str(result.db))}" if result.run_id else ""
    console.print(f"written to {escape(str(result.path))}{where}")
