"""``calibration_method="auto"``: quantize with each candidate setting, score each file on its runtime, keep the best.

The calibration data is split (seeded) into a fit part (AUTO_FIT_FRACTION), which calibrates every candidate,
and a held-out part, on which each candidate's file is run by its own runtime (``edgestill.runtimes.load``, one
thread) and compared with the float torch model: logits SQNR and top-1 agreement. Candidates are the format's
calibration methods (AUTO_METHODS) × equalisation × bias correction, varying only what the caller left to the
format's default (None); the format's measured default comes first, so a short budget still scores it. A
candidate starts only while the time budget (AUTO_TIME_BUDGET_S, or ``time_budget_s``) has time left; the rest
are recorded as skipped. The best is ranked by top-1 agreement, then SQNR (agreement is what the accuracy budget
checks; SQNR separates files that agree equally). The kept file is the one that was scored (calibrated on the
fit part, which the artifact's calibration manifest lists; the held-out ids are listed beside it), so its
figures in ``art.quantization["auto"]`` are the file's own.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.artifact import Artifact
from edgestill.compress.quantize.options import FORMAT_DEFAULTS, QuantOptions
from edgestill.compress.quantize.samples import Samples, arrays_of, is_integer_input, n_samples, take
from edgestill.errors import InputError

if TYPE_CHECKING:
    import torch

AUTO_TIME_BUDGET_S = 120.0  # per format; the candidate running when it runs out finishes, later ones are skipped
AUTO_FIT_FRACTION = 0.75  # of the calibration samples calibrate each candidate; the rest score it
AUTO_MIN_SAMPLES = 8  # each part needs at least this many samples
AUTO_SEED = 0
# The methods auto tries per format: those with a calibrator of their own (tflite's percentile and entropy run
# the same histogram observer as mse, so only minmax and mse differ there). NNCF's percentile (MEAN_QUANTILE)
# gave 1.1-2.6 dB SQNR on all three networks of perf/quant_methods.py, so auto does not spend time on it.
AUTO_METHODS: dict[str, tuple[str, ...]] = {
    "onnx": ("minmax", "entropy", "percentile", "mse"),
    "openvino": ("minmax", "mse"),
    "tflite": ("minmax", "mse"),
}


def split_calibration(n: int, *, fit_fraction: float = AUTO_FIT_FRACTION, seed: int = AUTO_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of the fit part and the held-out part of ``n`` calibration samples (a seeded shuffle).

    Raises:
        InputError: either part would have fewer than AUTO_MIN_SAMPLES samples.
    """
    n_fit = int(round(n * fit_fraction))
    if n_fit < AUTO_MIN_SAMPLES or n - n_fit < AUTO_MIN_SAMPLES:
        need = int(np.ceil(AUTO_MIN_SAMPLES / min(fit_fraction, 1 - fit_fraction)))
        raise InputError(
            f"calibration_method 'auto' splits the calibration data into a fit part ({fit_fraction:.0%}) and a held-out "
            f"part to score each candidate on, and needs at least {AUTO_MIN_SAMPLES} samples in each; {n} samples give "
            f"{n_fit} and {n - n_fit}. Pass at least {need} calibration samples (a few hundred is usual), or choose a "
            "calibration method (minmax, entropy, percentile, mse) instead of 'auto'."
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n_fit]), np.sort(order[n_fit:])


def candidates(fmt: str, requested: QuantOptions, *, first_method: str | None = None) -> list[QuantOptions]:
    """Resolved options to try for ``fmt``: the format's default first (``first_method`` where the model's default
    differs, as a text model's does), then each method and each toggle left unset."""
    defaults = FORMAT_DEFAULTS.get(fmt, {"calibration_method": "minmax", "equalize": False, "bias_correction": False})
    methods = list(AUTO_METHODS.get(fmt, ("minmax",)))
    first = first_method or defaults["calibration_method"]
    methods.sort(key=lambda m: m != first)
    eqs = [defaults["equalize"], not defaults["equalize"]] if requested.equalize is None else [requested.equalize]
    bcs = [defaults["bias_correction"], not defaults["bias_correction"]] if requested.bias_correction is None else [requested.bias_correction]
    out = []
    for eq in eqs:
        for bc in bcs:
            for method in methods:
                out.append(replace(requested, calibration_method=method, equalize=eq, bias_correction=bc))
    out.sort(key=lambda o: (o.equalize != eqs[0]) + (o.bias_correction != bcs[0]))  # one change from the default first
    return out


def _label(o: QuantOptions) -> str:
    return f"{o.calibration_method}, equalize={'on' if o.equalize else 'off'}, bias_correction={'on' if o.bias_correction else 'off'}"


def auto_quantize(
    model: torch.nn.Module, args: tuple, *, format: str, precision: str, calibration: Samples, staging_dir: Path,
    name: str, options: QuantOptions, requested: QuantOptions | None = None, layers: Sequence[Any], quantizer: Any,
    run: Callable[..., Artifact], time_budget_s: float | None = None, inputs: Sequence[Any] | None = None,
) -> Artifact:
    """Quantize ``model`` with each candidate, score each file on the held-out calibration samples, keep the best.

    Args:
        options: the resolved options (calibration_method "auto").
        requested: the options as the caller gave them (None fields are the ones auto may vary); default ``options``.
        run: quantizes one candidate: ``run(quantizer, model, args, format=, precision=, calibration=, staging_dir=,
            name=, options=, layers=)`` (api.run_quantizer: the torch transforms, then the format's quantizer).
        time_budget_s: seconds for all candidates (default AUTO_TIME_BUDGET_S).

    Returns:
        The best candidate's artifact in ``staging_dir`` under ``name``, with ``quantization["auto"]``: the split,
        every candidate's settings, SQNR, top-1 agreement and seconds (or why it was skipped or failed), the winner.

    Raises:
        InputError: the calibration data is too small to split.
        RuntimeFailure: every candidate failed (the first failure is re-raised).
    """
    from edgestill.errors import EdgestillError
    from edgestill.export.validate import compare_output, run_artifact, torch_reference
    from edgestill.runtimes import RuntimeOptions, load

    budget = AUTO_TIME_BUDGET_S if time_budget_s is None else float(time_budget_s)
    fit_idx, held_idx = split_calibration(n_samples(calibration))
    fit, held = take(calibration, fit_idx), take(calibration, held_idx)
    reference = torch_reference(model, held)
    asked = requested or replace(options, equalize=None, bias_correction=None)
    first = None
    if is_integer_input(args):  # a text model: the torch transforms are for convolutions, so only methods vary
        asked = replace(asked, equalize=False, bias_correction=options.bias_correction)
        first = QuantOptions().resolved(format, text=True).calibration_method  # its own default first
    tried = candidates(format, asked, first_method=first)
    Path(staging_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.auto-", dir=staging_dir))  # made here, so removing it removes only ours
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], int, Artifact] | None = None
    first_error: Exception | None = None
    try:
        for i, cand in enumerate(tried):
            row: dict[str, Any] = {"candidate": i, "settings": _label(cand), "calibration_method": cand.calibration_method,
                                   "equalize": cand.equalize, "bias_correction": cand.bias_correction}
            rows.append(row)
            if time.perf_counter() - t0 > budget:
                row["skipped"] = f"time budget of {budget:g} s spent"
                continue
            c0 = time.perf_counter()
            try:
                art = run(quantizer, model, args, format=format, precision=precision, calibration=fit,
                                    staging_dir=work / f"c{i}", name=name, options=cand, layers=layers, inputs=inputs)
                art.hash_files()
                session = load(art, RuntimeOptions(threads=1))
                got = run_artifact(session, art, arrays_of(held))
            except EdgestillError as exc:
                row["failed"] = str(exc).splitlines()[0][:300]
                first_error = first_error or exc
                continue
            parity = [compare_output(f"output{k}", g, r) for k, (g, r) in enumerate(zip(got, reference))]
            sqnr = min(p.sqnr_db for p in parity)
            agreement = min((p.top1_agreement for p in parity if p.top1_agreement is not None), default=None)
            row.update(sqnr_db=round(sqnr, 2), top1_agreement=None if agreement is None else round(agreement, 4),
                       seconds=round(time.perf_counter() - c0, 2))
            key = (-1.0 if agreement is None else agreement, sqnr)
            if best is None or key > best[0]:
                best = (key, i, art)
        if best is None:
            assert first_error is not None
            raise first_error
        _, winner, art = best
        for rel in art.required_files():
            dest = Path(staging_dir) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(art.directory / rel), dest)
        art.directory = Path(staging_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    art.quantization["auto"] = {
        "split": {"fit": n_samples(fit), "held_out": n_samples(held), "fit_fraction": AUTO_FIT_FRACTION, "seed": AUTO_SEED,
                  "fit_indices": fit_idx.tolist(), "held_out_indices": held_idx.tolist()},
        "scored_on": "each file's own runtime (1 thread) vs the float torch model on the held-out part",
        "ranked_by": "top-1 agreement, then SQNR",
        "time_budget_s": budget, "seconds": round(time.perf_counter() - t0, 2),
        "candidates": rows, "winner": rows[winner], "calibrated_on": "the fit part",
    }
    return art
