"""Reports people read: stored runs as one self-contained HTML file, Markdown, or JSON.

One data step, :func:`build_report`, turns runs of the results store into a JSON-able dict (runs with their
provenance; per device the measured cells, the Pareto front, int8-vs-fp32 pairs and the estimates, kept apart; parity
rows; teacher agreement). The renderers (``report_render``, re-exported here) only format that dict:
:func:`render_html` (inline CSS and inline SVG charts, nothing fetched, no script) and :func:`render_markdown`; they
escape every string that came from a user (model and run names, git refs, error text). :func:`write_report` is what
the chain and the ``report`` command call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from edgestill.benchmarks.report_render import render_html, render_markdown
from edgestill.benchmarks.store import ResultsStore
from edgestill.errors import InputError
from edgestill.outdir import write_text_atomic
from edgestill.record import device_key, device_label

__all__ = ["REPORT_SCHEMA", "build_report", "int8_pairs", "mark_pareto", "render_html",
           "render_markdown", "write_report"]

REPORT_SCHEMA = "edgestill.report/1"
FAILURE_REASON_CHARS = 400  # a failed cell's reason in the report; the whole text stays in the store
_HOST_KEYS = ("cpu_model", "cpu_count", "arch", "os", "kernel", "python", "mem_total_mb")


# -- the data step ------------------------------------------------------------------------------------------------


def build_report(store: ResultsStore, run_ids: Sequence[int]) -> dict[str, Any]:
    """Everything a report shows, from stored runs, as a JSON-able dict (the ``--json`` output).

    Args:
        store: an open results store.
        run_ids: the runs to report, e.g. from ``store.resolve_runs("latest")``; shown in this order.

    Returns:
        ``schema``, ``edgestill_version`` (of this report), ``runs`` (each with ``hosts``, ``runtimes``,
        ``tools``), ``devices`` (each with measured ``cells`` (``pareto``, ``unstable`` and ``quality`` set),
        ``failed``, ``int8_vs_fp32``, and ``estimates`` with ``estimated_int8_vs_fp32``: estimates never appear among
        the cells), ``parity`` and ``teacher_agreement`` rows. Accuracies and agreements are fractions (0..1);
        ``accuracy_drop_points`` are percentage points.

    Raises:
        InputError: a run id the store does not hold.
    """
    from edgestill import __version__

    known = {r["id"]: r for r in store.runs()}
    missing = [i for i in run_ids if i not in known]
    if missing:
        raise InputError(f"no run {', '.join(map(str, missing))} in {store.path}; it holds runs "
                         f"{', '.join(map(str, sorted(known))) or 'none'}.")  # fmt: skip
    run_ids = list(dict.fromkeys(run_ids))
    runs, measured, failed, estimates, parity = [], [], [], [], []
    for run_id in run_ids:
        manifests = store.artifacts(run_id)
        records = store.measurements(run_id)
        ests = store.estimates(run_id) + [r for r in records if r["kind"] == "estimated"]
        runs.append(_run_info(known[run_id], records, manifests))
        for r in records:
            if r["kind"] == "failed":
                failed.append(_failed_cell(r, known[run_id]))
            elif r["kind"] != "estimated":
                measured.append(_cell(r, manifests))
        estimates += [_cell(r, manifests, kind="estimated") for r in ests]
        parity += _parity_rows(run_id, records, manifests)
    devices = _devices(measured, failed, estimates)
    return {"schema": REPORT_SCHEMA, "edgestill_version": __version__, "runs": runs, "devices": devices,
            "parity": parity, "teacher_agreement": _teacher_rows(devices)}  # fmt: skip


def _run_info(run: dict[str, Any], records: list[dict[str, Any]], manifests: dict[str, Any]) -> dict[str, Any]:
    hosts: dict[str, dict[str, Any]] = {}
    runtimes: dict[str, str] = {}
    for r in records:
        prov = r.get("provenance") or {}
        if device_key(prov) and r["kind"] != "estimated":
            hosts.setdefault(device_key(prov), {"device_id": device_key(prov), **{k: prov.get(k) for k in _HOST_KEYS}})
        if prov.get("runtime_version"):
            runtimes[r["runtime"]] = str(prov["runtime_version"])
    tools: dict[str, str] = {}
    for m in manifests.values():
        tools.update({str(k): str(v) for k, v in (m.get("versions") or {}).items()})
    return {**run, "hosts": list(hosts.values()), "runtimes": dict(sorted(runtimes.items())),
            "tools": dict(sorted(tools.items()))}  # fmt: skip


def _family(name: str, precision: str) -> str:
    """The model an artifact was made from, by name: ``student-onnx-int8-static`` -> ``student-onnx``."""
    stripped = name.replace(precision, "").replace("--", "-").strip("-_. ")
    return stripped or name


GENERATIVE_KEYS = ("ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s", "prompt_tokens", "generated_tokens")


def _cell(r: dict[str, Any], manifests: dict[str, Any], *, kind: str = "measured") -> dict[str, Any]:
    acc = r.get("accuracy") or {}
    stability = r.get("stability") or {}
    prov = r.get("provenance") or {}
    manifest = manifests.get(r["artifact"]) or {}
    device = str((device_key(prov) if kind == "measured" else device_label(prov) or prov.get("device_id"))
                 or r.get("device_id") or "unknown device")
    return {
        "run_id": r["run_id"], "kind": kind, "device_id": device, "artifact": r["artifact"],
        "model": _family(r["artifact"], r["precision"]), "parent_sha256": manifest.get("parent_sha256"),
        "format": r["format"], "precision": r["precision"], "runtime": r["runtime"], "threads": r["threads"],
        "p50_ms": r.get("p50_ms"), "p90_ms": r.get("p90_ms"), "p99_ms": r.get("p99_ms"), "cv_percent": r.get("cv_percent"),
        "n": r.get("n"), "low_ms": r.get("low_ms"), "high_ms": r.get("high_ms"), "model_bytes": r.get("model_bytes"),
        "accuracy": acc.get("value"), "accuracy_metric": acc.get("metric"), "accuracy_n": acc.get("n"),
        "teacher_top1_agreement": r.get("teacher_top1_agreement"), "teacher_kl": r.get("teacher_kl"),
        **{k: r.get(k) for k in GENERATIVE_KEYS},  # None but for a generative model (its p50 is ms per decoded token)
        "unstable": bool(stability) and not stability.get("stable", True),
        "unstable_reasons": list(stability.get("reasons") or []),
        "warnings": list(r.get("warnings") or []), "host": {k: prov.get(k) for k in _HOST_KEYS if prov.get(k) is not None},
    }  # fmt: skip


def _failed_cell(r: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    reason = str((r.get("settings") or {}).get("runner_error") or r.get("error") or "no reason recorded").strip()
    if len(reason) > FAILURE_REASON_CHARS:
        reason = reason[:FAILURE_REASON_CHARS] + " …"
    device = device_key(r.get("provenance")) or r.get("device_id") or run.get("machine") or "unknown device"
    return {"run_id": r["run_id"], "device_id": str(device), "artifact": r["artifact"], "format": r["format"],
            "precision": r["precision"], "runtime": r["runtime"], "threads": r["threads"], "reason": reason}  # fmt: skip


def _devices(measured: list[dict], failed: list[dict], estimates: list[dict]) -> list[dict[str, Any]]:
    """One entry per device: measured devices first (in the order they were met), then estimate-only ones."""
    order = list(dict.fromkeys([c["device_id"] for c in measured] + [f["device_id"] for f in failed]
                               + [e["device_id"] for e in estimates]))  # fmt: skip
    by_artifact = {(c["run_id"], c["artifact"]): c for c in measured}
    devices = []
    for device_id in order:
        cells = sorted((c for c in measured if c["device_id"] == device_id), key=_latency_order)
        ests = sorted((e for e in estimates if e["device_id"] == device_id), key=_latency_order)
        key, label = _quality_of(cells, [by_artifact.get((e["run_id"], e["artifact"])) for e in ests])
        for c in cells:
            c["quality"] = c.get(key) if key else None
        for e in ests:  # an estimate has no accuracy of its own: the same artifact's, as measured elsewhere
            source = by_artifact.get((e["run_id"], e["artifact"]))
            e["quality"] = source.get(key) if key and source else None
            e["quality_source"] = f"measured on {source['device_id']}" if e["quality"] is not None else None
        mark_pareto(cells)
        host = next((c["host"] for c in cells if c["host"]), {})
        devices.append({
            "device_id": device_id, "description": _describe(host), "quality": key, "quality_label": label,
            "cells": cells, "failed": [f for f in failed if f["device_id"] == device_id],
            "int8_vs_fp32": int8_pairs(cells), "estimates": ests, "estimated_int8_vs_fp32": int8_pairs(ests),
        })  # fmt: skip
    return devices


def _latency_order(c: dict[str, Any]) -> tuple:
    return (c["p50_ms"] is None, c["p50_ms"] or 0.0, c["artifact"], c["runtime"], c["threads"])


def _quality_of(cells: list[dict], sources: Iterable[dict | None]) -> tuple[str | None, str]:
    """The y axis of a device: accuracy where any cell has one, else top-1 agreement with the teacher."""
    pool = list(cells) + [s for s in sources if s]
    metrics = sorted({c["accuracy_metric"] for c in pool if c.get("accuracy") is not None})
    if metrics:
        return "accuracy", f"accuracy ({', '.join(map(str, metrics))})"
    if any(c.get("teacher_top1_agreement") is not None for c in pool):
        return "teacher_top1_agreement", "top-1 agreement with the teacher"
    return None, "no accuracy recorded"


def _describe(host: dict[str, Any]) -> str:
    parts = [str(host.get("cpu_model") or "")]
    if host.get("cpu_count"):
        parts.append(f"{host['cpu_count']} cores")
    parts.append(" ".join(str(host[k]) for k in ("os", "kernel", "arch") if host.get(k)))
    return ", ".join(p for p in parts if p)


def mark_pareto(cells: list[dict[str, Any]]) -> None:
    """Set ``pareto`` on each cell: True when no other cell is at least as fast and at least as good, and strictly
    better in one of the two (``p50_ms`` lower is better, ``quality`` higher is better). A cell without both values
    is never on the front. Ties are all on the front."""
    placed = [c for c in cells if c.get("p50_ms") is not None and c.get("quality") is not None]
    for c in cells:
        c["pareto"] = c in placed and not any(
            o["p50_ms"] <= c["p50_ms"] and o["quality"] >= c["quality"]
            and (o["p50_ms"] < c["p50_ms"] or o["quality"] > c["quality"]) for o in placed)  # fmt: skip


def int8_pairs(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each int8 cell beside the fp32 cell of the same model, run, format, runtime and threads.

    The model is the manifests' parent checkpoint where both record it, else the artifact name without its precision.
    ``speedup`` is fp32 p50 / int8 p50 (above 1: int8 is faster); ``accuracy_drop_points`` and
    ``agreement_drop_points`` are fp32 minus int8 in percentage points (positive: int8 is worse); ``size_ratio`` is
    int8 bytes / fp32 bytes.
    """
    def key(c: dict[str, Any]) -> tuple:
        return (c["run_id"], c["format"], c["runtime"], c["threads"])

    def same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return a["model"] == b["model"] or bool(a["parent_sha256"]) and a["parent_sha256"] == b["parent_sha256"]

    pairs = []
    for q in (c for c in cells if c["precision"].startswith("int8")):
        bases = [c for c in cells if c["precision"] == "fp32" and key(c) == key(q) and same_model(c, q)]
        if not bases:
            continue
        f = next((c for c in bases if c["model"] == q["model"]), bases[0])
        pairs.append({
            "kind": q["kind"], "run_id": q["run_id"], "model": q["model"], "format": q["format"], "runtime": q["runtime"],
            "threads": q["threads"], "fp32": f["artifact"], "int8": q["artifact"], "int8_precision": q["precision"],
            "fp32_p50_ms": f["p50_ms"], "int8_p50_ms": q["p50_ms"], "speedup": _ratio(f["p50_ms"], q["p50_ms"]),
            "fp32_accuracy": f["accuracy"], "int8_accuracy": q["accuracy"],
            "accuracy_drop_points": _points(f["accuracy"], q["accuracy"]),
            "fp32_agreement": f["teacher_top1_agreement"], "int8_agreement": q["teacher_top1_agreement"],
            "agreement_drop_points": _points(f["teacher_top1_agreement"], q["teacher_top1_agreement"]),
            "size_ratio": _ratio(q["model_bytes"], f["model_bytes"]), "unstable": f["unstable"] or q["unstable"],
        })  # fmt: skip
    return pairs


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _points(a: float | None, b: float | None) -> float | None:
    return (a - b) * 100.0 if a is not None and b is not None else None


def _parity_rows(run_id: int, records: list[dict[str, Any]], manifests: dict[str, Any]) -> list[dict[str, Any]]:
    """Parity with torch per artifact output: from the bench records where they carry it, else from the validation
    the export stage wrote into the artifact's manifest."""
    rows: dict[tuple, dict[str, Any]] = {}
    keys = ("max_abs", "max_rel", "cosine", "sqnr_db", "top1_agreement", "top1_agreement_with_ties")
    for r in records:
        for p in r.get("parity") or []:
            rows.setdefault((r["artifact"], r["runtime"], p.get("name")), {
                "run_id": run_id, "artifact": r["artifact"], "format": r["format"], "precision": r["precision"],
                "runtime": r["runtime"], "output": p.get("name"), **{k: p.get(k) for k in keys}, "passed": None,
                "source": "bench"})  # fmt: skip
    for name, m in manifests.items():
        v = m.get("validation") or {}
        for p in v.get("outputs") or []:
            rows.setdefault((name, v.get("runtime"), p.get("name")), {
                "run_id": run_id, "artifact": name, "format": m.get("format"), "precision": m.get("precision"),
                "runtime": v.get("runtime"), "output": p.get("name"), **{k: p.get(k) for k in keys},
                "passed": v.get("passed"), "source": "validate"})  # fmt: skip
    return list(rows.values())


def _teacher_rows(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: dict[tuple, dict[str, Any]] = {}
    for d in devices:
        for c in d["cells"]:
            if c["teacher_top1_agreement"] is not None:
                rows.setdefault((c["run_id"], d["device_id"], c["artifact"], c["runtime"]), {
                    k: c[k] for k in ("run_id", "device_id", "artifact", "format", "precision", "runtime",
                                      "teacher_top1_agreement", "teacher_kl", "accuracy", "accuracy_metric")})  # fmt: skip
    return sorted(rows.values(), key=lambda r: (r["run_id"], r["device_id"], -r["teacher_top1_agreement"], r["artifact"]))


# -- files --------------------------------------------------------------------------------------------------------


def check_output_path(path: str | os.PathLike[str], *, option: str) -> Path:
    """The path a report file will be written to, checked before any work is done.

    Raises:
        InputError: its folder does not exist, or the path is a folder.
    """
    p = Path(path)
    if not p.parent.is_dir():
        raise InputError(f"{option} {p}: the folder {p.parent} does not exist. Create it first or pass a path in an "
                         "existing folder.")  # fmt: skip
    if p.is_dir():
        raise InputError(f"{option} {p} is a folder; pass a file path such as {p / ('report' + (p.suffix or '.html'))}.")
    return p


def write_report(
    store_path: str | os.PathLike[str],
    refs: str | int | Sequence[str | int] = ("latest",),
    *,
    html: str | os.PathLike[str] | None = None,
    md: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Report runs of a results store: build the report and write the files asked for, each atomically.

    The chain calls it after storing a run, e.g. ``write_report(db, [run_id], html=out / "report.html")``.

    Args:
        store_path: an existing results store (it is never created here).
        refs: the runs, as anything ``ResultsStore.resolve_runs`` accepts (``"latest"``, a run id, a label, a git ref
            or commit); one value or several. Runs named twice are reported once, in the order first named.
        html: where to write the self-contained HTML report, or None.
        md: where to write the Markdown report, or None.

    Returns:
        The report dict of :func:`build_report`.

    Raises:
        InputError: no store at ``store_path`` or not a results store, a ref that names no run, an output path in a
            folder that does not exist.
    """
    outputs = {opt: check_output_path(p, option=opt) for opt, p in (("--html", html), ("--md", md)) if p is not None}
    if len(outputs) == 2 and outputs["--html"].resolve() == outputs["--md"].resolve():
        raise InputError(f"--html and --md both name {outputs['--md']}; give each report its own file.")
    refs = [refs] if isinstance(refs, (str, int)) else list(refs) or ["latest"]
    with ResultsStore.open_existing(store_path) as store:
        run_ids = [i for ref in refs for i in store.resolve_runs(str(ref))]
        report = build_report(store, run_ids)
    if "--html" in outputs:
        write_text_atomic(outputs["--html"], render_html(report))
    if "--md" in outputs:
        write_text_atomic(outputs["--md"], render_markdown(report))
    return report
