"""``report.md``: the human summary of a chain report (``report.json`` holds every figure it shows)."""

from __future__ import annotations

from typing import Any

from edgestill.benchmarks.report_render import md_text as _t
from edgestill.chain.checks import describe_check
from edgestill.record import device_label


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def _num(v: Any, fmt: str = "{:,}") -> str:
    return "—" if v is None else fmt.format(v)


def _per_device(artifacts: list[dict[str, Any]]) -> list[str]:
    """The bench cells device by device, when the recipe measured beyond the host or estimated on a profile: an
    estimate says so in its own column and gives its band, never a measured-looking figure."""
    cells = [(r, m) for r in artifacts for m in r.get("measurements") or []]
    if all(m.get("kind") != "estimated" and device_label(m.get("provenance")) in (None, "host") for _, m in cells):
        return []
    lines = ["", "## Latency per device", "",
             "Measured cells ran on the device named (accuracy measured there, on its own runtime); estimated cells "
             "are the estimator's roofline for a device profile, with the band its cross-validated error gives: "
             "estimated, not measured.", "",
             "| artifact | device | kind | threads | p50 ms | p90 ms | band ms | test acc | teacher agree |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r, m in cells:
        kind = m.get("kind", "measured")
        estimated = kind == "estimated"
        p50 = _num(m.get("p50_ms"), "~{:.3f}" if estimated else "{:.3f}") if kind != "failed" else "—"
        p90 = "—" if estimated or kind == "failed" else _num(m.get("p90_ms"), "{:.3f}")
        band = (f"{m['low_ms']:.3f}–{m['high_ms']:.3f}" if estimated and m.get("low_ms") is not None
                and m.get("high_ms") is not None else "—")
        acc = (m.get("accuracy") or {}).get("value")
        lines.append(f"| {_t(r['artifact'])} | {_t(device_label(m.get('provenance')) or '?')} | {_t(kind)} | "
                     f"{m.get('threads')} | {p50} | {p90} | {band} | {_pct(acc) if not estimated else '—'} | "
                     f"{_pct(m.get('teacher_top1_agreement')) if not estimated else '—'} |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """A human summary of a chain report: data, models, artifacts with accuracy, agreement and latency, checks.

    Every string a recipe, a model or a file can carry (names, paths, kwargs, error messages) goes through ``_t``:
    it shows as the same text, never as Markdown or HTML."""
    if report.get("task") == "generate":
        lines = _llm_models(report) + _llm_artifacts(report.get("artifacts") or [])
    elif str(report.get("task", "")).startswith("text-"):
        lines = _text_models(report) + _artifacts(report)
    else:
        lines = _image_models(report) + _artifacts(report)
    if report.get("checks"):
        lines += ["", "## Checks", ""]
        lines += [f"- {'PASS' if c['verdict'] == 'pass' else 'FAIL'}: {_t(describe_check(c))}" for c in report["checks"]]
    lines += ["", "## Stages", "", "| stage | status | seconds |", "|---|---|---:|"]
    lines += [f"| {_t(k)} | {_t(v['status'])} | {v['seconds'] or 0:.1f} |" for k, v in report["stages"].items()]
    store = report.get("store")
    if store:
        lines += ["", f"Stored as run {store['run_id']} in {_t(store['path'])} ({store['measurements']} measurement(s))."]
    return "\n".join(lines) + "\n"


def _text_models(report: dict[str, Any]) -> list[str]:
    """A text recipe's data line and models table: accuracy for a classifier, agreement with the teacher's
    embeddings for an embedder."""
    d, s, t = report["data"], report["student"], report.get("teacher", {})
    prov = report.get("provenance", {})
    embed = report["task"] == "text-embed"
    labels = f"{d['num_classes']} classes ({_t(', '.join(d['class_names']))})" if d.get("num_classes") else "unlabelled"
    lines = [f"# edgestill {report['kind']}: {_t(report['recipe'])} ({_t(report['task'])})", "",
             f"Texts {_t(d['name'])}, {labels} (train {d['n_train']}, val {d['n_val']}, test {d['n_test']}), sequence "
             f"length {d['input_shape'][0]}. Host: {_t(prov.get('cpu_model', '?'))}. Recipe sha256 "
             f"`{report['recipe_sha256'][:12]}`.", "", "## Models (torch, test texts)", ""]
    if embed:
        lines += ["| model | source | parameters | cosine to teacher | retrieval agreement |", "|---|---|---:|---:|---:|",
                  f"| teacher | {_t(t.get('source'))}: {_t(t.get('model') or t.get('path'))} | {_num(t.get('parameters'))} "
                  "| 1 | 100.00% |",
                  f"| student | {_t(s['model'])} | {_num(s['parameters'])} | {_num(s.get('teacher_cosine'), '{:.4f}')} | "
                  f"{_pct(s.get('teacher_retrieval_agreement'))} |"]
        if s.get("retrieval_k"):
            lines += ["", f"Retrieval agreement: the share of each test text's {s['retrieval_k']} nearest neighbours (by "
                      "cosine) that the student's embeddings and the teacher's have in common."]
    else:
        lines += ["| model | source | parameters | test accuracy | teacher agreement |", "|---|---|---:|---:|---:|",
                  f"| teacher | {_t(t.get('source'))}: {_t(t.get('model') or t.get('path'))} | {_num(t.get('parameters'))} "
                  f"| {_pct(t.get('test_accuracy'))} | — |",
                  f"| student | {_t(s['model'])} | {_num(s['parameters'])} | {_pct(s.get('test_accuracy'))} | "
                  f"{_pct(s.get('teacher_top1_agreement'))} |"]
    losses = ", ".join(f"{_t(x['name'])}×{x['weight']:g}" for x in s.get("losses") or [])
    lines += ["", f"Losses: {losses or '—'}; {s.get('epochs_run')} epoch(s)."]
    return lines


def _llm_models(report: dict[str, Any]) -> list[str]:
    """A generate recipe's data line and models table: greedy exact match on the test problems (torch)."""
    d, s, t = report["data"], report["student"], report.get("teacher", {})
    prov = report.get("provenance", {})
    traces = s.get("traces") or {}
    kept = (f" Traces: {traces.get('kept')} kept of {traces.get('generated') or traces.get('rows')} (verified final "
            "answers)." if traces.get("kept") is not None else "")
    teacher = ("| teacher | black box: " + _t(t.get("path")) + " | — | — |" if t.get("black_box") else
               f"| teacher | {_t(t.get('source'))}: {_t(t.get('model') or t.get('path'))} | {_num(t.get('parameters'))} "
               f"| {_pct(t.get('test_exact_match'))} |")
    return [f"# edgestill {report['kind']}: {_t(report['recipe'])} ({_t(report['task'])})", "",
            f"Problems {_t(d['name'])} (train {d['n_train']}, val {d['n_val']}, test {d['n_test']}), up to "
            f"{d.get('max_new_tokens')} new tokens. Host: {_t(prov.get('cpu_model', '?'))}. Recipe sha256 "
            f"`{report['recipe_sha256'][:12]}`.", "", "## Models (torch, greedy, test problems)", "",
            "| model | source | parameters | exact match |", "|---|---|---:|---:|", teacher,
            f"| student | {_t(s.get('model'))} | {_num(s.get('parameters'))} | {_pct(s.get('test_exact_match'))} |", "",
            f"Method: {_t(s.get('method'))}, {s.get('steps')} steps; agreement with the teacher's answers "
            f"{_pct(s.get('test_teacher_agreement'))}.{kept}"]


def _llm_artifacts(artifacts: list[dict[str, Any]]) -> list[str]:
    """A generate recipe's artifacts: validation, exact match on each file's runtime, and decode speed."""
    if not artifacts:
        return []
    lines = ["", "## Artifacts (each on its own runtime, KV-cache decoding)", "",
             "Validation: fp32 files give torch's greedy tokens on every validation prompt; weight-only files are held "
             "to token agreement and KL against their format's fp32 file. Exact match is greedy decoding of the test "
             "problems on the file's runtime; TTFT and tokens/s at the bench section's prompt and generation lengths.",
             "", "| artifact | precision | runtime | validation | exact match | drop (pts) | teacher agree | TTFT ms | "
             "decode tok/s | threads | KB |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in artifacts:
        cells = [m for m in r.get("measurements") or [] if m.get("kind") == "measured"] or [{}]
        for m in cells:
            kb = "" if r.get("model_bytes") is None else f"{r['model_bytes'] / 1024:.0f}"
            lines.append(f"| {_t(r['artifact'])} | {_t(r['precision'])} | {_t(r.get('runtime') or '—')} | "
                         f"{'pass' if r['passed'] else _t(r.get('status') or 'FAIL')} | {_pct(r.get('test_accuracy'))} | "
                         f"{_num(r.get('accuracy_drop_points'), '{}')} | {_pct(r.get('teacher_top1_agreement'))} | "
                         f"{_num(m.get('ttft_ms'), '{:.2f}')} | {_num(m.get('decode_tokens_per_s'), '{:.1f}')} | "
                         f"{m.get('threads', '—')} | {kb} |")
    notes = [f"- {_t(r['artifact'])}: {_t('; '.join(r.get('reasons') or []))}" for r in artifacts
             if not r.get("passed") and r.get("reasons")]
    return lines + (["", *notes] if notes else [])


def _image_models(report: dict[str, Any]) -> list[str]:
    d, s, t = report["data"], report["student"], report.get("teacher", {})
    prov = report.get("provenance", {})
    lines = [f"# edgestill {report['kind']}: {_t(report['recipe'])}", "",
             f"Data {_t(d['name'])} {d['input_shape']} × {d['num_classes']} classes (train {d['n_train']}, val "
             f"{d['n_val']}, test {d['n_test']}), augmentation {_t(d['augment'])}. Host: {_t(prov.get('cpu_model', '?'))}. "
             f"Recipe sha256 `{report['recipe_sha256'][:12]}`.", "",
             "## Models (torch, test split)", "", "| model | source | parameters | MACs / sample | test accuracy |",
             "|---|---|---:|---:|---:|"]
    if t.get("source") not in (None, "none"):
        acc = t.get("test_accuracy")
        shown = _pct(acc) if acc is not None else (
            f"train {_pct(t['train_accuracy'])} (from its answers)" if t.get("train_accuracy") is not None else "—")
        lines.append(f"| teacher | {_t(t['source'])}: {_t(t.get('model') or t.get('path'))} {_t(t.get('kwargs') or '')} | "
                     f"{_num(t.get('parameters'))} | {_num(t.get('macs'))} | {shown} |")
    lines.append(f"| student | {_t(s['model'])} {_t(s.get('kwargs') or '')} | {_num(s['parameters'])} | {_num(s.get('macs'))} | "
                 f"{_pct(s['test_accuracy'])} |")
    if "baseline_test_accuracy" in s:
        lines.append(f"| student, no KD | {_t(s['model'])} | {_num(s['parameters'])} | {_num(s.get('macs'))} | "
                     f"{_pct(s['baseline_test_accuracy'])} |")
        lines += ["", f"KD gain over the no-KD student (same seed and schedule): **{s['kd_gain_points']:+.2f} points**."]
    losses = ", ".join(f"{_t(x['name'])}×{x['weight']}" for x in s["losses"])
    lines += ["", f"Losses: {losses}; {s['epochs_run']} epoch(s), best val accuracy {_pct(s['best_val_accuracy'])} "
              f"at epoch {s['best_epoch']}{' (stopped early)' if s['stopped_early'] else ''}; teacher mode "
              f"{_t(s['teacher_mode'])}."]
    return lines


def _artifacts(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    embed = any(r.get("teacher_cosine") is not None for r in report.get("artifacts") or [])
    if embed:
        lines += _embedding_artifacts(report["artifacts"])
    elif report.get("artifacts"):
        lines += ["", "## Artifacts (each on its own runtime)", "",
                  "Test accuracy and its drop are against the labels; teacher agreement is the share of test samples "
                  "whose top-1 class is the teacher's, and KL is the mean KL(teacher ‖ artifact) in nats: both need "
                  "no labels.", "",
                  "| artifact | precision | runtime | parity | test acc | drop (pts) | teacher agree | teacher KL | "
                  "p50 ms | p90 ms | CV % | KB |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in report["artifacts"]:
            m = (r.get("measurements") or [{}])[0]
            lat = [_num(m.get(k), f) if m.get("kind") == "measured" else "—"
                   for k, f in (("p50_ms", "{:.3f}"), ("p90_ms", "{:.3f}"), ("cv_percent", "{:.1f}"))]
            kb = "" if r.get("model_bytes") is None else f"{r['model_bytes'] / 1024:.0f}"
            lines.append(
                f"| {_t(r['artifact'])} | {_t(r['precision'])} | {_t(r.get('runtime') or '—')} | {'pass' if r['passed'] else 'FAIL'} | "
                f"{_pct(r.get('test_accuracy'))} | {_num(r.get('accuracy_drop_points'), '{}')} | "
                f"{_pct(r.get('teacher_top1_agreement'))} | {_num(r.get('teacher_kl'), '{:.4f}')} | "
                f"{' | '.join(lat)} | {kb} |")
        bench_threads = sorted({m["threads"] for r in report["artifacts"] for m in r.get("measurements", [])})
        if bench_threads:
            lines += ["", f"Latency at {bench_threads[0]} thread(s) (all thread counts: report.json and the results "
                      "store, raw samples included)."]
        lines += _per_device(report["artifacts"])
        notes = [f"- {_t(r['artifact'])}: {_t(r['error'])}" for r in report["artifacts"] if r.get("error")]
        lines += ["", *notes] if notes else []
    return lines


def _embedding_artifacts(artifacts: list[dict[str, Any]]) -> list[str]:
    """An embedder's artifacts: agreement with the teacher's embeddings on the test texts, on each file's runtime."""
    k = next((r["retrieval_k"] for r in artifacts if r.get("retrieval_k")), "k")
    lines = ["", "## Artifacts (each on its own runtime)", "",
             f"Cosine is the mean cosine similarity of each test text's embedding to the teacher's; retrieval agreement "
             f"the share of its {k} nearest neighbours both find. An embedding has no classes: no accuracy or top-1.", "",
             "| artifact | precision | runtime | parity | cosine to teacher | retrieval agreement | p50 ms | p90 ms | CV % | KB |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in artifacts:
        m = (r.get("measurements") or [{}])[0]
        lat = [_num(m.get(key), f) if m.get("kind") == "measured" else "—"
               for key, f in (("p50_ms", "{:.3f}"), ("p90_ms", "{:.3f}"), ("cv_percent", "{:.1f}"))]
        kb = "" if r.get("model_bytes") is None else f"{r['model_bytes'] / 1024:.0f}"
        lines.append(f"| {_t(r['artifact'])} | {_t(r['precision'])} | {_t(r.get('runtime') or '—')} | "
                     f"{'pass' if r['passed'] else 'FAIL'} | {_num(r.get('teacher_cosine'), '{:.4f}')} | "
                     f"{_pct(r.get('teacher_retrieval_agreement'))} | {' | '.join(lat)} | {kb} |")
    lines += _per_device(artifacts)
    notes = [f"- {_t(r['artifact'])}: {_t(r['error'])}" for r in artifacts if r.get("error")]
    return lines + (["", *notes] if notes else [])
