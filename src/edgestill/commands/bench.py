"""``edgestill bench``: artifacts × thread counts, each cell timed in its own runner process."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import typer

from edgestill.cli import app, echo_json, run_command


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  edgestill bench demo-out/artifacts/student-onnx-fp32.manifest.json\n"
        "  edgestill bench demo-out/artifacts/*.manifest.json --threads 1,2 --min-runs 100 --json\n"
        "  edgestill bench model.onnx   # a file edgestill did not write: its inputs are read from it\n"
        "  edgestill bench student.manifest.json --data test.npz   # adds top-1 accuracy (x, y)\n"
        "  edgestill bench text-student.manifest.json --data eval.npz   # a text model: input_ids, attention_mask,\n"
        "      # [token_type_ids,] y (labels) or teacher_embeddings (an embedder: cosine + top-5 retrieval agreement)\n"
        "  edgestill bench text-student.manifest.json --text queries.txt   # times the first text, tokenized\n"
        "  edgestill bench a.manifest.json b.manifest.json --repeat 5   # interleaved, p50 CV across repeats\n"
        "  edgestill bench arts/*.manifest.json --run-key ci-$GITHUB_RUN_ID   # a retried job resumes, stores once\n"
        "  edgestill bench model.xml --accelerator gpu   # OpenVINO's GPU plugin; the record says what ran\n"
        "  edgestill bench student.manifest.json --device pi5-lab-1 --inventory devices.yaml --data test.npz\n"
        "  edgestill bench out/m-onnx-int8-static.manifest.json.rejected --allow-rejected   # diagnose a rejected file\n"
        "  edgestill bench llm/student-llm-onnx-int4-weight.manifest.json --threads 1,2 --data llm-eval.npz\n"
        "      # a generative model: TTFT, prefill and decode tokens/s at 128/128 (--prompt-tokens, --gen-tokens),\n"
        "      # exact match of greedy answers on the LLM eval NPZ; p50 etc. are then ms per decoded token\n\n"
        "Every measurement, raw samples included, is stored in the SQLite file given by --db.\n"
        "Latency is the runtime's own per-call clock where it keeps one (OpenVINO, as benchmark_app reports it)\n"
        "and the wall clock around the runtime's call elsewhere; --clock wall uses the wall clock everywhere.\n"
        "A steady state that drifts, spreads or has many outliers is extended (up to --extend-unstable seconds) until a\n"
        "stable stretch is found, else flagged unstable in the record; `edgestill gate` gives no verdict on it.\n"
        "Each cell runs in its own process, stopped past --timeout seconds or --memory-limit bytes; such a cell is\n"
        "recorded as failed with its reason (timed out, ran out of memory, crashed) and the other cells still run.\n"
        "Exit codes: 0 all cells measured; 2 bad input (also when every failed cell was bad input, e.g. a file\n"
        "its runtime cannot parse or data of the wrong shape); 3 any cell crashed, timed out, ran out of memory\n"
        "or failed internally."
    )
)
def bench(
    artifacts: list[Path] = typer.Argument(..., help="Artifact manifests, or model files (.onnx, .tflite, OpenVINO .xml): with a manifest beside them or without one (read from the file)."),
    threads: str = typer.Option("1", "--threads", "-t", help="Inference thread counts, comma-separated (e.g. 1,2)."),
    min_runs: int = typer.Option(50, "--min-runs", min=1, help="Steady state lasts at least this many runs..."),
    min_seconds: float = typer.Option(1.0, "--min-seconds", min=0.0, help="...and at least this many seconds."),
    runtime: str | None = typer.Option(None, "--runtime", help="onnxruntime, litert or openvino (default: the format's own)."),
    accelerator: str = typer.Option("cpu", "--accelerator",
                                    help="Where the model runs: cpu; openvino: gpu, npu; onnxruntime: cuda, tensorrt, "
                                         "openvino-ep, nnapi, qnn; litert: gpu (nnapi on a phone over adb). The record "
                                         "says which one ran and whether it fell back to the CPU."),
    data: Path | None = typer.Option(None, "--data", help="An .npz with x and y arrays: adds accuracy per artifact. A multi-input "
                                 "(text) model: one array per input, named like it, instead of x; y, teacher_logits "
                                 "or teacher_embeddings (an embedder's agreement with its teacher). A generative "
                                 "model: the LLM eval NPZ (prompt_ids, prompt_len, answer_ids, marker_ids, strip_ids, "
                                 "max_new_tokens[, teacher_answer_ids]) for exact match."),
    text: Path | None = typer.Option(None, "--text",
                                     help="A text model's timing input: the first text of this .txt (one per line) or "
                                          "one-column .csv, tokenized with each artifact's own tokenizer (default: "
                                          "random ids and masks at the artifact's length)."),
    extend_unstable: float = typer.Option(5.0, "--extend-unstable", min=0.0,
                                          help="Extend an unstable steady state up to this many seconds, then flag it "
                                               "(0: only flag it)."),
    clock: str = typer.Option("runtime", "--clock", help="runtime (the runtime's own per-call clock where it has one) or wall."),
    repeat: int = typer.Option(1, "--repeat", min=1, help="Run the whole matrix N times, interleaved; report p50 CV across them."),
    timeout: str = typer.Option("300", "--timeout", help="Seconds one cell may run; past them its runner is killed and "
                                "the cell recorded as failed."),
    memory_limit: str | None = typer.Option(None, "--memory-limit",
                                            help="Memory one cell's runner may use (e.g. 2G, 512M); past it the cell is "
                                                 "recorded as failed (default: 90% of the memory available)."),
    db: Path = typer.Option(Path(".edgestill/results.db"), "--db", help="SQLite results store."),
    run_key: str | None = typer.Option(None, "--run-key",
                                       help="Make the run resumable and stored once: a rerun with the same key measures "
                                            "only the cells a killed run had not finished, and a run already stored "
                                            "under the key is not measured again (e.g. $GITHUB_RUN_ID)."),
    device: str = typer.Option("host", "--device",
                               help="Where to measure: host (this machine) or a device of --inventory, reached over "
                                    "SSH or ADB (the artifact, the job and --data travel there; see `edgestill lab`)."),
    inventory: Path | None = typer.Option(None, "--inventory",
                                          help="The devices.yaml that says how to reach --device (default: "
                                               "./devices.yaml when --device is not host)."),
    prompt_tokens: int = typer.Option(128, "--prompt-tokens",
                                      help="A generative model's prompt length for timing (a synthetic seeded prompt); "
                                           "a shorter context times the largest lengths that fit, same ratio."),
    gen_tokens: int = typer.Option(128, "--gen-tokens",
                                   help="A generative model's new tokens per timed generation (greedy, not stopping "
                                        "at eos): TTFT, prefill and decode tokens/s."),
    allow_rejected: bool = typer.Option(
        False, "--allow-rejected",
        help="Measure *.rejected files (files that failed validation) for diagnosis; their records are marked "
             "rejected and `edgestill gate` never counts them as passing. Refused without it."),
    json_out: bool = typer.Option(False, "--json", help="Print the measurement records as JSON."),
) -> None:
    """Measure latency (p50/p90/p99, CV), init and first-call time, peak memory and accuracy of artifacts."""

    def body() -> int:
        from edgestill.benchmarks.bench import benchmark_matrix
        from edgestill.runtimes.harness import CLOCKS, BenchOptions
        from edgestill.benchmarks.store import ResultsStore
        from edgestill.commands.options import parse_int_list
        from edgestill.errors import InputError
        from edgestill.runtimes.inspect import artifact_for
        from edgestill.host import git_ref, redact
        from edgestill.runtimes import get_runtime

        from edgestill.runtimes.generate import check_lengths

        thread_counts = parse_int_list(threads, option="--threads")
        check_lengths(prompt_tokens, gen_tokens, prefix="--")
        timeout_s = _positive_seconds(timeout, option="--timeout")
        memory_limit_bytes = None
        if memory_limit is not None:
            from edgestill.benchmarks.bench import check_memory_limit
            from edgestill.limits import parse_bytes

            memory_limit_bytes = check_memory_limit(parse_bytes(memory_limit, option="--memory-limit"),
                                                    option="--memory-limit")
        if clock not in CLOCKS:
            raise InputError(f"--clock {clock!r} is not a clock; use one of {', '.join(CLOCKS)}.")
        bench_options = BenchOptions(min_runs=min_runs, min_seconds=min_seconds, clock=clock,  # type: ignore[arg-type]
                                     stability_max_seconds=extend_unstable)
        for a in artifacts:  # a missing, unreadable or (without --allow-rejected) rejected file fails here
            _check_artifact(a, allow_rejected=allow_rejected)
        plain = [a for a in artifacts if not _generative(a)]  # a generative runtime checks its own names and the CPU
        if runtime is not None and plain:
            get_runtime(runtime)
        _check_accelerator(accelerator, runtime, plain)
        if data is not None and not data.is_file():
            what = "is a folder" if data.is_dir() else "is not a regular file" if data.exists() else "does not exist"
            raise InputError(f"--data {data} {what}. Pass an .npz file holding arrays x and y.")
        if text is not None and device != "host":
            raise InputError(f"--text times on this machine only (the tokenizer runs here); drop --device {device}, or "
                             "drop --text (random ids and masks at the artifact's length are timed there).")
        if device != "host":
            if allow_rejected:
                raise InputError(f"--allow-rejected measures on this machine only; drop --device {device}, or drop "
                                 "--allow-rejected and bench published artifacts there.")
            return _bench_on_device(device, inventory, artifacts, thread_counts, db=db, runtime=runtime,
                                    accelerator=accelerator, bench=bench_options, data=data, timeout_s=timeout_s,
                                    repeat=repeat, run_key=run_key, memory_limit=memory_limit, json_out=json_out,
                                    prompt_tokens=prompt_tokens, gen_tokens=gen_tokens)
        store = ResultsStore(db)
        journal = None
        if run_key is not None:
            journal = _journal_path(db, run_key)
            stored = store.run_by_key(run_key)
            if stored is not None:  # a run killed after it stored, or a retried CI job: nothing to measure again
                with store:
                    results = [store.measurement(int(d["id"])) for d in store.measurements(stored)]
                journal.unlink(missing_ok=True)
                typer.echo(f"--run-key {run_key!r} is already stored as run {stored} in {db}; nothing measured again.",
                           err=True)
                return _render(results, stored, db, repeat=repeat, json_out=json_out)
        with contextlib.ExitStack() as stack:
            timing_inputs: Any = "random"
            if text is not None:  # each artifact's tokenizer encodes the text, in a temporary folder removed after
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgestill-text-")))
                timing_inputs = _text_inputs(text, artifacts, work)
            results = _measure(benchmark_matrix, artifacts, thread_counts, json_out=json_out, repeat=repeat,
                               runtime=runtime, accelerator=accelerator, bench=bench_options, eval_data=data,
                               timeout_s=timeout_s, memory_limit_bytes=memory_limit_bytes, journal=journal,
                               allow_rejected=allow_rejected, inputs=timing_inputs, prompt_tokens=prompt_tokens,
                               gen_tokens=gen_tokens)
        if text is not None:
            for m in results:
                m.settings["inputs"] = f"--text {text} (its first text, tokenized with the artifact's tokenizer)"
        with store:
            # the ref and command line without credentials: a token in $EDGESTILL_GIT_REF, a URL's user:password
            run_id = store.add_run(redact("bench " + " ".join(str(a) for a in artifacts)), git_ref=git_ref(),
                                   measurements=results, run_key=run_key)
        if journal is not None:
            journal.unlink(missing_ok=True)  # the run is stored: a rerun with the key finds it there
        return _render(results, run_id, db, repeat=repeat, json_out=json_out)

    code = run_command(body)  # typer.Exit raised inside body would count as an internal failure
    if code:
        raise typer.Exit(code)


def _bench_on_device(name: str, inventory: Path | None, artifacts: list[Path], thread_counts: list[int], *,
                     db: Path, runtime: str | None, accelerator: str, bench: Any, data: Path | None,
                     timeout_s: float, repeat: int, run_key: str | None, memory_limit: str | None,
                     json_out: bool, prompt_tokens: int, gen_tokens: int) -> int:
    """``bench --device NAME``: every cell on an inventory device through its transport, stored with the device (a
    generative artifact timed there at ``prompt_tokens``/``gen_tokens``)."""
    from edgestill.commands.progress import RichReporter
    from edgestill.devices.inventory import load_inventory
    from edgestill.devices.remote import bench_on_device
    from edgestill.errors import InputError
    from edgestill.host import git_ref, redact

    for option, given in (("--repeat", repeat > 1), ("--run-key", run_key is not None),
                          ("--memory-limit", memory_limit is not None)):
        if given:
            raise InputError(f"{option} applies to the host's runner; it is not available with --device {name} yet. "
                             f"Drop {option}, or run `edgestill lab run` for several devices.")
    from edgestill.benchmarks.store import ResultsStore

    entry = load_inventory(inventory or Path("devices.yaml")).get(name)
    store = ResultsStore(db)  # after the input is checked: bad input leaves no store behind
    with RichReporter(enabled=not json_out) as rep:
        rep.stage(f"bench on {name}", total=len(artifacts) * len(thread_counts))
        results = bench_on_device(entry, artifacts, thread_counts, bench=bench, eval_data=data, runtime=runtime,
                                  accelerator=accelerator, timeout_s=timeout_s, prompt_tokens=prompt_tokens,
                                  gen_tokens=gen_tokens, progress=lambda i, n, label="": rep.advance(i, n, label))
    with store:
        run_id = store.add_run(redact(f"bench --device {name} " + " ".join(str(a) for a in artifacts)),
                               git_ref=git_ref(), measurements=results, machine=entry.name)
    from edgestill.devices.remote import failure_exit_code  # a refused host key or login is the user's to fix: 2

    return _render(results, run_id, store.path, repeat=1, json_out=json_out, code=failure_exit_code(results))


def _check_artifact(path: Path, *, allow_rejected: bool) -> None:
    """Open ``path`` as bench will, touching nothing: an artifact, a bare model file, or (``allow_rejected``) a
    ``*.rejected`` file staged in a scratch folder that is removed again.

    Raises:
        InputError: a missing or unreadable file; a rejected one without ``allow_rejected`` (the message says why it
            was rejected and that --allow-rejected measures it).
    """
    import tempfile

    from edgestill.artifact import is_rejected, load_rejected
    from edgestill.runtimes.inspect import artifact_for

    if allow_rejected and is_rejected(path):
        with tempfile.TemporaryDirectory(prefix="edgestill-rejected-") as tmp:
            art, _reason = load_rejected(path, tmp)
            art.verify_files()
        return
    artifact_for(path)


def _check_accelerator(accelerator: str, runtime: str | None, artifacts: list[Path]) -> None:
    """Refuse, before any process starts, an accelerator unknown or not offered by a runtime the cells will use.

    Raises:
        InputError: the name is not an accelerator, or the runtime (given, or each artifact's own) does not offer it.
    """
    from edgestill.artifact import Artifact
    from edgestill.runtimes import get_runtime
    from edgestill.runtimes.base import DEFAULT_RUNTIME, RuntimeOptions

    RuntimeOptions(accelerator=accelerator)
    by_suffix = {".onnx": "onnx", ".tflite": "tflite", ".xml": "openvino"}  # a model file without a manifest
    formats = {by_suffix.get(a.suffix) or _format_of(a) for a in artifacts}
    names = {DEFAULT_RUNTIME[f] for f in formats} if runtime is None else {runtime} if artifacts else set()
    for name in sorted(names):
        get_runtime(name).check_accelerator(accelerator)


def _generative(path: Path) -> bool:
    """Whether ``path`` is a generative artifact (its manifest has ``source.llm``); a rejected file is checked as a
    plain one."""
    from edgestill.artifact import is_rejected
    from edgestill.runtimes.generate import llm_info
    from edgestill.runtimes.inspect import artifact_for

    return not is_rejected(path) and llm_info(artifact_for(path)) is not None


def _format_of(path: Path) -> str:
    """The format an artifact's manifest (or a rejected file's manifest) records."""
    from edgestill.artifact import Artifact, is_rejected, rejected_manifest_path

    if is_rejected(path):  # checked by _check_artifact already: the manifest is there and valid
        import json

        return str(json.loads(rejected_manifest_path(path).read_text(encoding="utf-8"))["format"])
    return Artifact.load(path).format


def _journal_path(db: Path, run_key: str) -> Path:
    """Where a keyed bench appends its finished cells: beside the store, one file per key."""
    import hashlib

    from edgestill.errors import InputError

    if not run_key.strip() or len(run_key) > 200 or not run_key.isprintable():
        raise InputError(f"--run-key must be 1 to 200 printable characters (e.g. ci-1234), got {run_key[:80]!r}.")
    return db.parent / f".{db.name}.journal" / f"{hashlib.sha256(run_key.encode()).hexdigest()[:32]}.jsonl"


def _render(results: list[Any], run_id: int, db: Path, *, repeat: int, json_out: bool, code: int | None = None) -> int:
    """Print the records (a table, or the JSON document) and return the exit code their failures call for."""
    from edgestill.benchmarks.bench import failure_exit_code, failure_reason, repeat_summary
    from edgestill.commands.render import print_measurements

    repeats = repeat_summary(results) if repeat > 1 else []
    if json_out:
        from edgestill.record import RESULTS_SCHEMA, RESULTS_SCHEMA_VERSION

        doc = {"schema": RESULTS_SCHEMA, "schema_version": RESULTS_SCHEMA_VERSION, "run_id": run_id, "db": str(db),
               "measurements": [m.to_dict(with_samples=True) for m in results]}  # raw samples: `edgestill gate` reads them
        if repeat > 1:
            doc["repeats"] = repeats
        echo_json(doc)
        for m in results:  # warnings stay visible on stderr; stdout is only the JSON document
            for w in m.warnings:
                typer.echo(f"warning: {m.artifact} ({m.threads} thr): {w}", err=True)
        for r in repeats:
            if r["warning"]:
                typer.echo(f"warning: {r['artifact']} ({r['threads']} thr): {r['warning']}", err=True)
    else:
        print_measurements(results)
        print_generative(results)
        if repeats:
            print_repeats(repeats)
        typer.echo(f"stored as run {run_id} in {db}")
    code = failure_exit_code(results) if code is None else code
    if code == 2:  # bad input only: the one-paragraph reason on stderr, without the runner's log tail
        for m in results:
            if m.kind == "failed":
                typer.echo(f"error: {m.artifact} ({m.runtime}, {m.threads} thr): {failure_reason(m)}", err=True)
    return code


def _measure(benchmark_matrix: Any, artifacts: list[Path], thread_counts: list[int], *, json_out: bool, repeat: int,
             **kwargs: Any) -> list[Any]:
    """benchmark_matrix over every artifact x thread count x repeat, with a progress bar unless --json."""
    from edgestill.commands.progress import RichReporter

    with RichReporter(enabled=not json_out) as rep:
        rep.stage("bench", total=len(artifacts) * len(thread_counts) * repeat)
        return benchmark_matrix([str(a) for a in artifacts], thread_counts, rounds=repeat,
                                progress=lambda i, n, label="": rep.advance(i, n, label), **kwargs)


def _text_inputs(path: Path, artifacts: list[Path], work: Path) -> dict[str, Path]:
    """{artifact: .npz of its inputs}: the first text of ``path`` encoded by each artifact's own tokenizer.

    Raises:
        InputError: the text file is missing, empty or not UTF-8; an artifact has no tokenizer (not a text model);
            the text is longer than an artifact's sequence length.
    """
    import numpy as np

    from edgestill.data.text import read_texts
    from edgestill.runtimes.inspect import artifact_for
    from edgestill.runtimes.text import TextEncoder

    first = read_texts(path)[0]
    out = {}
    for i, a in enumerate(artifacts):
        feed = TextEncoder.for_artifact(artifact_for(a)).encode([first])
        out[str(a)] = work / f"inputs-{i}.npz"
        np.savez(out[str(a)], **feed)
    return out


def _positive_seconds(text: str, *, option: str) -> float:
    """``text`` as a finite number of seconds > 0.

    Raises:
        InputError: not a number, not finite, or <= 0.
    """
    import math

    from edgestill.errors import InputError

    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{option} takes a number of seconds (e.g. 300), got {text!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{option} must be a number of seconds > 0 (e.g. 300), got {text!r}.")
    return value


def print_repeats(repeats: list[dict[str, Any]]) -> None:
    """The p50 of each interleaved repetition per cell and its CV; a CV past the threshold is warned about."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(title="p50 across interleaved repetitions (ms)")
    for col in ("artifact", "runtime", "threads", "repeat", "p50 each", "p50 CV %"):
        table.add_column(col, justify="left" if col in ("artifact", "runtime", "p50 each") else "right")
    for r in repeats:
        cv = "" if r["p50_cv_percent"] is None else f"{r['p50_cv_percent']:.1f}"
        table.add_row(escape(r["artifact"]), escape(r["runtime"]), str(r["threads"]), str(r["repeat"]),
                      " ".join(f"{p:.3f}" for p in r["p50_ms_each"]), cv)  # fmt: skip
    console.print(table)
    for r in repeats:
        if r["warning"]:
            console.print(f"[yellow]warning[/] {escape(r['artifact'])} ({r['threads']} thr): {escape(r['warning'])}")


def print_generative(results: list[Any]) -> None:
    """A generative model's figures (its rows above are ms per decoded token): prompt/new tokens, TTFT, prefill and
    decode tokens/s, exact match and agreement with the teacher's answers. Nothing when no record is generative."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    rows = [m for m in results if m.kind == "measured" and m.decode_tokens_per_s is not None]
    if not rows:
        return
    table = Table(title="Generative models (greedy, fixed lengths; the latency rows above are ms per decoded token)")
    for col in ("artifact", "runtime", "threads", "prompt+new", "TTFT ms", "prefill tok/s", "decode tok/s",
                "exact match", "teacher agr."):
        table.add_column(col, justify="left" if col in ("artifact", "runtime") else "right")
    for m in rows:
        em = "" if m.accuracy is None else f"{100 * m.accuracy.value:.1f}% (n={m.accuracy.n})"
        agr = "" if m.teacher_top1_agreement is None else f"{100 * m.teacher_top1_agreement:.1f}%"
        table.add_row(escape(m.artifact), escape(m.runtime), str(m.threads), f"{m.prompt_tokens}+{m.generated_tokens}",
                      f"{m.ttft_ms:.2f}", f"{m.prefill_tokens_per_s:.0f}", f"{m.decode_tokens_per_s:.1f}", em, agr)
    Console(width=None if sys.stdout.isatty() else 160).print(table)
