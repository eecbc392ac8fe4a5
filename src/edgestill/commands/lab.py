"""``edgestill lab run``: artifacts × the devices of an inventory, one job per device at a time, devices in parallel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgestill.cli import app, echo_json, run_command

lab_app = typer.Typer(
    help="The device lab: measure artifacts on every device of an inventory (devices.yaml), devices in parallel.",
    epilog=("\b\nExamples:\n"
            "  edgestill lab run --inventory devices.yaml out/artifacts/*.manifest.json\n"
            "  edgestill lab run -i devices.yaml student.manifest.json --devices pi5-lab-1,jetson-1 --threads 1,4\n"
            "  edgestill lab run -i devices.yaml student.manifest.json --data eval.npz --json\n"
            "  edgestill lab run -i devices.yaml llm/student-llm-onnx-int4-weight.manifest.json --prompt-tokens 256 "
            "--gen-tokens 64"),
    no_args_is_help=True,
)
app.add_typer(lab_app, name="lab")


@lab_app.command(
    "run",
    epilog=(
        "\b\nExamples:\n"
        "  edgestill lab run --inventory devices.yaml out/artifacts/*.manifest.json\n"
        "  edgestill lab run -i devices.yaml student.manifest.json --devices pi5-lab-1,jetson-1 --threads 1,4\n\n"
        "\b\nAn inventory (devices.yaml) lists the devices:\n"
        "  schema: edgestill-inventory\n"
        "  schema_version: 1\n"
        "  devices:\n"
        "    - {name: pi5-lab-1, profile: raspberry-pi-5, transport: ssh, host: 192.168.1.20, user: pi,\n"
        "       key_file: ~/.ssh/id_ed25519, known_hosts: ~/.ssh/known_hosts, python: /home/pi/venv/bin/python}\n"
        "    - {name: this-box, profile: host, transport: local}\n\n"
        "Each device runs one cell at a time; devices run in parallel. A device that is unreachable or fails is\n"
        "reported with its reason while the others complete. Each device's results are stored as one run (label\n"
        "lab:NAME) in --db as soon as it finishes; failed cells are stored as failed, never as numbers.\n"
        "Exit codes: 0 every cell measured; 2 bad input, or every failure was yours to fix (an unknown or changed\n"
        "host key, a refused key, an artifact the runner refused); 3 a device was unreachable, lacked python or a\n"
        "runtime, timed out or crashed."
    ),
)
def run(
    artifacts: list[Path] = typer.Argument(..., help="Artifact manifests (or bare .onnx/.tflite/.xml model files)."),
    inventory: Path = typer.Option(Path("devices.yaml"), "--inventory", "-i", help="The inventory file (devices.yaml)."),
    devices: str | None = typer.Option(None, "--devices", help="Device names, comma-separated (default: all)."),
    threads: str = typer.Option("1", "--threads", "-t", help="Inference thread counts, comma-separated (e.g. 1,4)."),
    min_runs: int = typer.Option(50, "--min-runs", min=1, help="Steady state lasts at least this many runs..."),
    min_seconds: float = typer.Option(1.0, "--min-seconds", min=0.0, help="...and at least this many seconds."),
    runtime: str | None = typer.Option(None, "--runtime", help="onnxruntime, litert or openvino (default: the format's own)."),
    data: Path | None = typer.Option(None, "--data", help="An .npz with x and y (or teacher_logits): scored on each device."),
    timeout: float = typer.Option(300.0, "--timeout", min=1.0, help="Seconds one cell may run on a device."),
    prompt_tokens: int = typer.Option(128, "--prompt-tokens",
                                      help="A generative model's prompt length for timing on each device (a synthetic "
                                           "seeded prompt); a shorter context times the largest lengths that fit, "
                                           "same ratio."),
    gen_tokens: int = typer.Option(128, "--gen-tokens",
                                   help="A generative model's new tokens per timed generation on each device (greedy, "
                                        "not stopping at eos): TTFT, prefill and decode tokens/s."),
    db: Path = typer.Option(Path(".edgestill/results.db"), "--db", help="SQLite results store."),
    json_out: bool = typer.Option(False, "--json", help="Print the per-device summary and every record as JSON."),
) -> None:
    """Measure artifacts on the devices of an inventory; report each device, store every result."""

    def body() -> int:
        from edgestill.commands.options import parse_int_list
        from edgestill.devices.inventory import load_inventory
        from edgestill.devices.lab import run_lab
        from edgestill.runtimes.generate import check_lengths
        from edgestill.runtimes.harness import BenchOptions

        thread_counts = parse_int_list(threads, option="--threads")
        check_lengths(prompt_tokens, gen_tokens, prefix="--")
        inv = load_inventory(inventory)
        names = None if devices is None else [d.strip() for d in devices.split(",") if d.strip()]
        chosen = inv.select(names)  # an unknown name fails here, before anything runs
        bench = BenchOptions(min_runs=min_runs, min_seconds=min_seconds)
        with _DeviceProgress([d.name for d in chosen], enabled=not json_out) as show:
            result = run_lab(inv, [str(a) for a in artifacts], thread_counts, devices=names, db=db, bench=bench,
                             eval_data=data, runtime=runtime, timeout_s=timeout, progress=show.update,
                             prompt_tokens=prompt_tokens, gen_tokens=gen_tokens)
        if json_out:
            from edgestill.record import RESULTS_SCHEMA, RESULTS_SCHEMA_VERSION

            echo_json({"schema": RESULTS_SCHEMA, "schema_version": RESULTS_SCHEMA_VERSION,
                       **result.to_dict(with_samples=True)})
        else:
            _print_summary(result)
        for d in result.devices:
            if not d.ok:
                typer.echo(f"error: device {d.device} ({d.failure}): {d.error}", err=True)
        return result.exit_code

    code = run_command(body)
    if code:
        raise typer.Exit(code)


class _DeviceProgress:
    """One progress bar per device (on stderr, so --json stays clean); updated from the lab's worker threads."""

    def __init__(self, names: list[str], *, enabled: bool):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("[bold]{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                  console=Console(stderr=True), transient=True, disable=not enabled)
        self._tasks = {n: self._progress.add_task(n, total=None, info="waiting") for n in names}

    def __enter__(self) -> _DeviceProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, device: str, done: int, total: int, label: str) -> None:
        from rich.markup import escape

        if device in self._tasks:
            self._progress.update(self._tasks[device], completed=done, total=total, info=escape(label))


def _print_summary(result: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="device lab")
    for col in ("device", "transport", "profile", "measured", "failed", "p50 ms", "status", "run"):
        table.add_column(col, overflow="fold")
    for d in result.devices:
        s = d.summary()
        p50 = ", ".join(f"{k}: {v:.3f}" for k, v in s["p50_ms"].items()) or "-"
        status = "[green]ok[/]" if d.ok else f"[red]{escape(str(d.failure))}[/]"  # the reason follows on stderr
        table.add_row(escape(d.device), d.transport, escape(d.profile), str(s["measured"]), str(s["failed"]),
                      escape(p50), status, str(d.run_id))
    Console().print(table)
    typer.echo(f"stored {len(result.devices)} run(s), one per device, in {result.db}")
