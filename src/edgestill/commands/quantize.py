"""``edgestill quantize``: int8 per format within an accuracy budget, with sensitivity report and KD repair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgestill.cli import app, echo_json, run_command
from edgestill.compress.quantize.base import QUANTIZERS, quant_precisions
from edgestill.export.base import formats_of
from edgestill.commands.options import QUANT_FLAGS
from edgestill.compress.quantize.budget import DEFAULT_MIN_COSINE
from edgestill.compress.quantize.calibration import DEFAULT_CALIBRATION_SAMPLES
from edgestill.compress.quantize.options import AUTO_PRECISION, TEXT_DEFAULTS

FORMAT_CHOICES: tuple[str, ...] = tuple(f.value for f in formats_of(QUANTIZERS))
PRECISION_CHOICES: tuple[str, ...] = tuple(p.value for p in quant_precisions())
REPORT_JSON = "quantize-report.json"
REPORT_MD = "quantize-report.md"
_TEXT_ROUTES = ", ".join(f"{fmt} {d['precision']}" for fmt, d in TEXT_DEFAULTS.items())


@app.command(
    "quantize",
    epilog=(
        "\b\nExamples:\n"
        "  edgestill quantize --model mobilenetv2-student --checkpoint demo-out/checkpoints/student-kd.safetensors \\\n"
        "      --data synthetic-shapes --format onnx,tflite,openvino --out q-out\n"
        "  edgestill quantize --model resnet18 --checkpoint r18.safetensors --data val.npz --max-accuracy-drop 0.5 --report\n"
        "  edgestill quantize --model m.pt2 --data val.npz --calibration calib.npz --calibration-method percentile --json\n"
        "  edgestill quantize --model mobilenetv2-student --checkpoint s.safetensors --data synthetic-shapes \\\n"
        "      --max-float-layers 0 --repair-with-teacher teacher.safetensors --teacher-model resnet-teacher\n"
        "  edgestill quantize --model m.pt2 --data unlabelled.npz --eval-fraction 0.3 --max-kl 0.05 --repair\n"
        "  edgestill quantize --model my-minilm/ --data texts.npz --min-cosine 0.995   (an HF embedder; texts.npz holds\n"
        "      input_ids, attention_mask, token_type_ids)\n\n"
        "\b\nData: --data is a built-in dataset (calibration: 300 class-stratified training samples; budget measured\n"
        "on the test split) or an .npz with x and, optionally, y: --eval-fraction of it (default 0.5) is held out\n"
        "for the budget, calibration is drawn from the rest. --calibration C.npz (x, optional ids) replaces the\n"
        "drawn calibration set. With integer labels y the budget is top-1 accuracy points vs the fp32 artifact on\n"
        "the same runtime; without labels it is top-1 agreement with the fp32 artifact (drop = 100 x (1 -\n"
        "agreement)); agreement and mean KL(fp32 || int8) are reported either way, and --max-kl adds a KL budget.\n"
        "Over budget, the most int8-sensitive layers stay float (a 'mixed' artifact) until the budget is met or\n"
        "--time-budget ends; --repair then fine-tunes the model under int8 fake quantization with the fp32 model\n"
        "as the oracle (no labels needed; --repair-with-teacher uses a teacher). If a step after the naive int8\n"
        "file fails, the naive result is still reported and kept. The final file must also pass parity with torch\n"
        "(int8 tolerances, --tolerance int8.min_sqnr_db=15 to change them). Writes OUT/quantize-report.json and .md.\n"
        "OUT is emptied first: it must be new, empty or an earlier quantize's (another command's only with --overwrite),\n"
        "and may not hold an input (--checkpoint, --data, ...).\n\n"
        "\b\nText models (integer id inputs, e.g. a Hugging Face folder): --precision int8 (the default) picks each\n"
        "format's transformer route: onnx int8-dynamic (onnxruntime quantize_dynamic), openvino int8-static (NNCF,\n"
        "model_type=TRANSFORMER), tflite int8-dynamic (ai-edge-quantizer dynamic range); the manifest's\n"
        "quantization.chosen says which and why. An embedder's budget is the mean cosine to fp32 (--min-cosine).\n\n"
        "\b\nExit codes: 0 every format within budget and its file passed parity with torch; 1 a format missed the\n"
        "budget or parity (its best artifact is kept as *.rejected); 2 bad input (nothing written); 3 a conversion\n"
        "library or runtime failed."
    ),
)
def quantize_command(
    model: str = typer.Option(..., "--model", help="Built-in name, package.module:function factory, or FILE.pt2."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Weights (.safetensors, or .pt/.pth loaded weights-only)."),
    input_shape: str | None = typer.Option(None, "--input-shape", help="e.g. 1x3x32x32 (needed for a factory)."),
    num_classes: int | None = typer.Option(None, "--num-classes", min=1, help="Classifier size of a built-in model."),
    seq_len: int | None = typer.Option(None, "--seq-len", min=1, help="Text models: tokens per input (default min(128, the model's maximum)); --data's arrays must have it."),
    formats: str = typer.Option(",".join(FORMAT_CHOICES), "--format", help=f"Formats, comma-separated: {', '.join(FORMAT_CHOICES)}."),
    precision: str = typer.Option(AUTO_PRECISION, "--precision", help=f"One of {', '.join(PRECISION_CHOICES)}. The default, "
                                  f"{AUTO_PRECISION}, is each format's own: int8-static for image models; for a text model "
                                  f"{_TEXT_ROUTES} (see the text below)"),
    data: str = typer.Option(..., "--data", help="Built-in dataset name or an .npz with x (inputs) and optional y (integer labels); "
                             "for a model with several inputs, one array per input named like it (input_ids, attention_mask, ...)."),
    eval_fraction: float | None = typer.Option(None, "--eval-fraction", help="Share of an .npz --data held out for the budget (default 0.5)."),
    calibration: Path | None = typer.Option(None, "--calibration", help="An .npz with x (and optional ids): the calibration set."),
    calibration_samples: int = typer.Option(DEFAULT_CALIBRATION_SAMPLES, "--calibration-samples", min=1, help="Calibration samples drawn from --data."),
    calibration_method: str | None = QUANT_FLAGS["calibration_method"],
    tflite_recipe: str | None = QUANT_FLAGS["tflite_recipe"],
    equalize: bool | None = QUANT_FLAGS["equalize"],
    bias_correction: bool | None = QUANT_FLAGS["bias_correction"],
    integer_io: bool = QUANT_FLAGS["integer_io"],
    max_accuracy_drop: float = typer.Option(1.0, "--max-accuracy-drop", help="Allowed top-1 loss (without labels: disagreement with fp32), absolute points."),
    max_kl: float | None = typer.Option(None, "--max-kl", help="Also require mean KL(fp32 || int8) <= this, in nats (e.g. 0.05)."),
    min_cosine: float = typer.Option(DEFAULT_MIN_COSINE, "--min-cosine", help="Embedding models: the budget, a floor on the int8 "
                                     "embeddings' mean cosine similarity to the fp32 file's (same runtime)."),
    time_budget: float = typer.Option(300.0, "--time-budget", help="Seconds for the float-fallback search per format."),
    max_float_layers: int | None = typer.Option(None, "--max-float-layers", help="At most this many layers kept float (0: all-int8)."),
    report: bool = typer.Option(False, "--report", help="Rank every layer's sensitivity even when int8 is within budget."),
    repair_oracle: bool = typer.Option(False, "--repair", help="When PTQ misses: QAT with the KD loss, the fp32 model itself as the oracle (no labels)."),
    repair_with_teacher: Path | None = typer.Option(None, "--repair-with-teacher", help="Teacher checkpoint: QAT with the KD loss when PTQ misses."),
    teacher_model: str = typer.Option("resnet-teacher", "--teacher-model", help="The teacher's architecture (built-in name)."),
    teacher_kwargs: str = typer.Option("", "--teacher-kwargs", help="Teacher architecture options as JSON, e.g. '{\"width\": 16}'."),
    repair_epochs: int = typer.Option(3, "--repair-epochs", min=1, help="QAT fine-tuning epochs."),
    tolerance: list[str] = typer.Option([], "--tolerance", help="Parity threshold for the final file: int8.KEY=VALUE (repeatable; see export --help)."),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Time fp32 vs int8 at 1 thread (interleaved rounds)."),
    name: str | None = typer.Option(None, "--name", help="Artifact name stem (default: from --model)."),
    out: Path = typer.Option(Path("quantize-out"), "--out", "-o", help="Folder for the artifacts and the report."),
    db: Path = typer.Option(Path(".edgestill/results.db"), "--db", help="SQLite results store the latency rounds are added to (with --bench)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an --out folder another edgestill command wrote."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Quantize a model to int8 for each format within an accuracy budget measured on the format's runtime."""

    def body() -> int:
        import json

        from edgestill.commands.export import check_out_dir, default_name
        from edgestill.commands.progress import RichReporter
        from edgestill.commands.streams import library_output_to
        from edgestill.compress.quantize.budget import QuantizeConfig, check_inputs, quantize
        from edgestill.compress.quantize.data import load_quant_data
        from edgestill.commands.options import quant_options
        from edgestill.compress.quantize.data import check_eval_fraction
        from edgestill.errors import InputError
        from edgestill.export.validate import Tolerances
        from edgestill.models.loading import forward_parameters, input_specs, load_model
        from edgestill.outdir import check_output_dir, claim_output_dir, write_json_atomic, write_text_atomic

        config = QuantizeConfig(
            formats=tuple(f.strip() for f in formats.split(",") if f.strip()), precision=precision,
            max_accuracy_drop=max_accuracy_drop, time_budget_s=time_budget, max_float_layers=max_float_layers,
            options=quant_options(calibration_method=calibration_method, tflite_recipe=tflite_recipe, equalize=equalize,
                                  bias_correction=bias_correction, integer_io=integer_io),
            calibration_samples=calibration_samples, name=name or default_name(model), bench_latency=bench, report=report,
            chance_level="refuse", max_kl=max_kl,  # a user's data at chance level is bad input here, not a result
            min_cosine=min_cosine,
        )
        if eval_fraction is not None:
            check_eval_fraction(eval_fraction, has_calibration_file=calibration is not None)
        if repair_oracle and repair_with_teacher is not None:
            raise InputError("--repair uses the fp32 model as the oracle and --repair-with-teacher a teacher; pass one of them.")
        tolerances = Tolerances.parse(tolerance)
        check_out_dir(out)
        inputs = [("--model", model if Path(model).exists() else None), ("--checkpoint", checkpoint),
                  ("--data", data if Path(data).exists() else None), ("--calibration", calibration),
                  ("--repair-with-teacher", repair_with_teacher)]
        check_output_dir(out, kind="quantize", overwrite=overwrite, inputs=inputs)  # before anything is loaded
        loaded = load_model(model, checkpoint=checkpoint, input_shape=input_shape, num_classes=num_classes, seq_len=seq_len)
        if loaded.model is None:
            raise InputError(f"--model {model}: quantize needs a torch model (a built-in name, a factory or a .pt2), not an ONNX file.")
        qdata = load_quant_data(data, calibration_file=calibration, n_calibration=config.calibration_samples,
                                eval_fraction=eval_fraction)
        task = (loaded.source.get("text") or {}).get("task")
        params = forward_parameters(loaded.model)
        specs = input_specs(loaded.input_shapes, params[0] if params else ()) or None  # names, kinds, vocabulary
        check_inputs(loaded.model, loaded.example_inputs, config, calibration=qdata.calibration,
                     calibration_ids=qdata.calibration_ids, eval_x=qdata.eval_x, eval_y=qdata.eval_y,
                     other_labels=qdata.train_y, input_specs=specs, task=task)
        if (repair_oracle or repair_with_teacher is not None) and len(loaded.example_inputs) != 1:
            raise InputError(f"--repair and --repair-with-teacher fine-tune single-input models; this model takes "
                             f"{len(loaded.example_inputs)} inputs. Leave the repair flag out (the float-layer fallback "
                             "still runs), or distil a better student first (edgestill distill).")
        repair = None
        if repair_oracle:
            from edgestill.compress.quantize.repair import oracle_repair_config

            repair_x, repair_y = qdata.repair_data()
            repair = oracle_repair_config(loaded.model, loaded.example_inputs, train_x=repair_x, train_y=repair_y,
                                          epochs=repair_epochs)
        if repair_with_teacher is not None:
            from edgestill.compress.quantize.repair import teacher_repair_config

            try:
                kwargs = json.loads(teacher_kwargs) if teacher_kwargs else {}
            except json.JSONDecodeError as exc:
                raise InputError(f"--teacher-kwargs {teacher_kwargs!r} is not JSON ({exc.msg}); pass e.g. '{{\"width\": 16}}'.") from None
            if not isinstance(kwargs, dict):
                raise InputError(f"--teacher-kwargs must be a JSON object, got {teacher_kwargs!r}.")
            repair = teacher_repair_config(teacher_model, repair_with_teacher, student=loaded.model,
                                           example_inputs=loaded.example_inputs, train_x=qdata.train_x, train_y=qdata.train_y,
                                           teacher_kwargs=kwargs, epochs=repair_epochs)
        claim_output_dir(out, kind="quantize", overwrite=overwrite, inputs=inputs)
        with library_output_to(out / "logs" / "quantize.log") as (_, term_err):
            with RichReporter(enabled=not json_out, file=term_err) as rep:
                rep.stage("quantize")
                result = quantize(
                    loaded.model, loaded.example_inputs, config, out, calibration=qdata.calibration,
                    calibration_ids=qdata.calibration_ids, eval_x=qdata.eval_x, eval_y=qdata.eval_y, repair=repair,
                    progress=lambda msg: rep.advance(0, None, msg), claimed=True, tolerances=tolerances,
                    input_specs=specs, task=task, source=loaded.source if loaded.source.get("text") else None,
                )
        result.warnings[:0] = qdata.warnings
        doc = {**result.to_dict(), "model": model, "checkpoint": str(checkpoint) if checkpoint else None, "data": qdata.source}
        measured = [m for f in result.formats for m in f.measurements]
        if measured:  # the fp32 / int8 latency rounds, raw samples included
            from edgestill.benchmarks.store import ResultsStore

            with ResultsStore(db) as store:
                run_id = store.add_run(f"quantize {model}", label=config.name, measurements=measured)
            doc["store"] = {"path": str(db), "run_id": run_id, "measurements": len(measured)}
        write_json_atomic(out / REPORT_JSON, doc)
        write_text_atomic(out / REPORT_MD, result.markdown())
        if json_out:
            echo_json(doc)
        else:
            _print(result.to_dict())
            typer.echo(f"Report: {out / REPORT_MD}")
        for w in result.warnings:
            typer.echo(f"warning: {w}", err=True)
        for f in result.formats:
            if f.error:
                typer.echo(f"{f.format}: {f.error}", err=True)
            elif f.failures:
                typer.echo(f"{f.format}: {'; '.join(f.failures)}", err=True)
        return result.exit_code

    code = run_command(body)
    if code:
        raise typer.Exit(code)


def _print(doc: dict[str, Any]) -> None:
    for f in doc["formats"]:
        if f["final"] is None:
            typer.echo(f"{f['format']:9s} NO int8 file: {f['stopped_by']}")
            continue
        lat = (f.get("latency") or {}).get("final_vs_fp32_p50")
        if f["metric"] == "mean_cosine_to_fp32":  # an embedder: its budget is a cosine floor, not accuracy points
            typer.echo(
                f"{f['format']:9s} ({f['metric']}) naive int8 {f['naive']['accuracy']:.5f}  final {f['final']['accuracy']:.5f} "
                f"({'within' if f['budget_met'] else 'BELOW'} the minimum {doc['min_cosine']:g})  "
                f"float layers: {', '.join(f['float_layers']) or 'none'}" + ("" if lat is None else f"  latency final/fp32 {lat:.2f}")
                + ("" if f["passed"] or not f["budget_met"] else "  PARITY FAILED")
            )
            continue
        agree = "" if f["top1_agreement"] is None else f"  agreement {100 * f['top1_agreement']:.2f}%"
        kl = "" if f["kl"] is None else f"  KL {f['kl']:.4f}"
        typer.echo(
            f"{f['format']:9s} ({f['metric']}) fp32 {100 * f['fp32_accuracy']:.2f}%  naive int8 {100 * f['naive']['accuracy']:.2f}%  "
            f"final {100 * f['final']['accuracy']:.2f}% (drop {f['final']['drop_points']:.2f} pts, "
            f"{'within' if f['budget_met'] else 'OVER'} budget {doc['max_accuracy_drop']:g}){agree}{kl}  "
            f"float layers: {', '.join(f['float_layers']) or 'none'}"
            + ("" if lat is None else f"  latency final/fp32 {lat:.2f}")
            + ("" if f["passed"] or not f["budget_met"] else "  PARITY FAILED")
        )
