"""``edgestill bench``: artifacts × thread counts, each cell timed in its own runner process."""

from __future__ import annotations

from pathlib import Path

import typer

from edgestill.cli import app, echo_json, run_command


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  edgestill bench demo-out/artifacts/student-onnx-fp32.manifest.json\n"
        "  edgestill bench demo-out/artifacts/*.manifest.json --threads 1,2 --min-runs 100 --json\n"
        "  edgestill bench student.manifest.json --data test.npz   # adds top-1 accuracy (x, y)\n\n"
        "Every measurement, raw samples included, is stored in the SQLite file given by --db."
    )
)
def bench(
    artifacts: list[Path] = typer.Argument(..., help="Artifact manifests (or model files with a manifest beside them)."),
    threads: str = typer.Option("1", "--threads", help="Thread counts, comma-separated (e.g. 1,2)."),
    min_runs: int = typer.Option(50, "--min-runs", min=1, help="Steady state lasts at least this many runs..."),
    min_seconds: float = typer.Option(1.0, "--min-seconds", min=0.0, help="...and at least this many seconds."),
    runtime: str | None = typer.Option(None, "--runtime", help="onnxruntime, litert or openvino (default: the format's own)."),
    data: Path | None = typer.Option(None, "--data", help="An .npz with x and y arrays: adds accuracy per artifact."),
    db: Path = typer.Option(Path(".edgestill/results.db"), "--db", help="SQLite results store."),
    json_out: bool = typer.Option(False, "--json", help="Print the measurement records as JSON."),
) -> None:
    """Measure latency (p50/p90/p99, CV), init and first-call time, peak memory and accuracy of artifacts."""

    def body() -> None:
        from edgestill.benchmarks.bench import benchmark_matrix
        from edgestill.benchmarks.harness import BenchOptions
        from edgestill.benchmarks.store import ResultsStore
        from edgestill.commands.options import parse_int_list
        from edgestill.commands.progress import RichReporter
        from edgestill.commands.render import print_measurements
        from edgestill.errors import InputError
        from edgestill.export.artifact import Artifact
        from edgestill.runtimes import get_runtime

        thread_counts = parse_int_list(threads, option="--threads")
        for a in artifacts:
            Artifact.load(a)  # a missing or foreign file fails here, before any process starts
        if runtime is not None:
            get_runtime(runtime)
        if data is not None and not data.is_file():
            raise InputError(f"--data {data} does not exist. Pass an .npz file holding arrays x and y.")
        store = ResultsStore(db)
        with RichReporter(enabled=not json_out) as rep:
            rep.stage("bench", total=len(artifacts) * len(thread_counts))
            results = benchmark_matrix(
                [str(a) for a in artifacts],
                thread_counts,
                runtime=runtime,
                bench=BenchOptions(min_runs=min_runs, min_seconds=min_seconds),
                eval_data=data,
                progress=lambda i, n, label="": rep.advance(i, n, label),
            )
        with store:
            run_id = store.add_run("bench " + " ".join(str(a) for a in artifacts), measurements=results)
        if json_out:
            echo_json({"run_id": run_id, "db": str(db), "measurements": [m.to_dict() for m in results]})
        else:
            print_measurements(results)
            typer.echo(f"stored as run {run_id} in {db}")
        if any(m.kind == "failed" for m in results):
            raise typer.Exit(3)

    run_command(body)
