"""HTML and Markdown renderings of a report dict (``edgestill.benchmarks.report.build_report``).

Both renderers walk one outline (:func:`outline`: headings, paragraphs, tables, charts), so they show the same
things. Every string in the outline is plain text; each renderer escapes it in exactly one place (``_h`` for HTML,
``md_text`` for Markdown), so no caller can forget to. The HTML is one file with nothing to fetch: inline CSS, inline
SVG charts, no script, and a Content-Security-Policy that would block a script even if one got in.
"""

from __future__ import annotations

import html as _html
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)  # right-aligned columns
    row_classes: list[str] = field(default_factory=list)  # per row, e.g. "pareto unstable"; HTML only


# one outline item: ("h1"|"h2"|"h3"|"p"|"note", text) | ("table", Table) | ("list", [text]) | ("kv", [(k, v)])
# | ("chart", device, chart_id) | ("details", summary, [text])
Block = tuple


# -- formatting (plain text; escaping is the renderers' job) -------------------------------------------------------

NONE = "—"


def fmt_ms(v: float | None) -> str:
    if v is None:
        return NONE
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 1 else f"{v:.3f}" if v >= 0.1 else f"{v:.4f}"


def fmt_pct(v: float | None) -> str:
    return NONE if v is None else f"{v * 100:.2f}%"


def fmt_points(v: float | None) -> str:
    return NONE if v is None else f"{v:+.2f}"


def fmt_ratio(v: float | None) -> str:
    return NONE if v is None else f"{v:.2f}×"


def fmt_num(v: float | None, digits: int = 1) -> str:
    return NONE if v is None else f"{v:.{digits}f}"


def fmt_sci(v: float | None) -> str:
    return NONE if v is None else f"{v:.3g}"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return NONE
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def _commit(run: dict[str, Any]) -> str:
    c = run.get("git_commit")
    return NONE if not c else c[:10] + (" (uncommitted changes)" if run.get("git_dirty") else "")


def _run_name(run: dict[str, Any]) -> str:
    bits = [str(x) for x in (run.get("label"), run.get("git_ref")) if x]
    return f"run {run['id']}" + (f" ({', '.join(bits)})" if bits else "")


# -- the outline ---------------------------------------------------------------------------------------------------


LATENCY_NOTE = ("Latency is the steady-state p50 per call in milliseconds. Estimates come from a cost model, not a "
                "measurement, and are always labelled as such; they never appear among measured cells.")
INT8_NOTE = ("Speed-up is fp32 p50 / int8 p50 (above 1.00× the int8 file is faster). Drops are fp32 minus int8 in "
             "percentage points (positive: int8 is worse). Size is int8 bytes / fp32 bytes.")
TEACHER_NOTE = ("The share of eval samples whose top-1 class is the teacher's, and the mean KL(teacher ‖ artifact) in "
                "nats, each measured on the artifact's own runtime; no labels needed.")


def outline(report: dict[str, Any]) -> list[Block]:
    """The report as headings, paragraphs and tables of plain text, in reading order."""
    runs, devices = report["runs"], report["devices"]
    multi = len(runs) > 1
    when = " · ".join(f"{_run_name(r)}: {r.get('created_at') or NONE}, commit {_commit(r)}" for r in runs)
    out: list[Block] = [("h1", outline_title(report)),
                        ("p", f"{when}. Report made by edgestill {report['edgestill_version']}."), ("note", LATENCY_NOTE),
                        ("h2", "Summary"), ("table", _summary(devices))]  # fmt: skip
    for i, d in enumerate(devices):
        out += _device_blocks(d, f"chart-{i + 1}", multi)
    out += [("h2", "int8 vs fp32"), ("note", INT8_NOTE)]
    for d in devices:
        if d["int8_vs_fp32"]:
            out += [("h3", f"on {d['device_id']}"), ("table", _pairs_table(d["int8_vs_fp32"], multi))]
        if d["estimated_int8_vs_fp32"]:
            out += [("h3", f"on {d['device_id']}, estimated (not measured)"),
                    ("table", _pairs_table(d["estimated_int8_vs_fp32"], multi, estimated=True))]
    if not any(d["int8_vs_fp32"] or d["estimated_int8_vs_fp32"] for d in devices):
        out.append(("p", "No int8 cell was measured beside an fp32 cell of the same model, format, runtime and threads."))
    out.append(("h2", "Parity with torch"))
    if report["parity"]:
        out.append(("table", _parity_table(report["parity"], multi)))
    else:
        out.append(("p", "No parity results were recorded for these runs."))
    out += [("h2", "Teacher agreement"), ("note", TEACHER_NOTE)]
    if report["teacher_agreement"]:
        out.append(("table", _teacher_table(report["teacher_agreement"], multi)))
    else:
        out.append(("p", "No teacher agreement was recorded for these runs."))
    out.append(("h2", "Provenance"))
    for r in runs:
        out += [("h3", _run_name(r)), ("kv", _provenance(r))]
    return out


def _device_blocks(d: dict[str, Any], chart_id: str, multi: bool) -> list[Block]:
    out: list[Block] = [("h2", f"Device {d['device_id']}")]
    if d["description"]:
        out.append(("p", d["description"]))
    out.append(("chart", d, chart_id))
    if d["cells"]:
        out += [("h3", "Measured cells"), ("table", _cells_table(d, multi))]
        warned = [f"{c['artifact']} ({c['runtime']}, {c['threads']} thr): {w}" for c in d["cells"] for w in c["warnings"]]
        if warned:
            out.append(("details", f"{len(warned)} measurement warning(s)", warned))
    generative = [c for c in d["cells"] if c.get("decode_tokens_per_s") is not None]
    if generative:
        out += [("h3", "Generative models (greedy at fixed lengths; their p50 above is ms per decoded token)"),
                ("table", _generative_table(generative, multi))]
    if d["failed"]:
        run = (lambda f: f", run {f['run_id']}") if multi else (lambda f: "")
        items = [f"{f['artifact']} ({f['format']} {f['precision']}, {f['runtime']}, {f['threads']} thr{run(f)}): "
                 f"{f['reason']}" for f in d["failed"]]  # fmt: skip
        out += [("h3", f"Failed cells ({len(d['failed'])})"), ("list", items)]
    if d["estimates"]:
        out += [("h3", "Estimates (cost model, not measured)"), ("table", _estimates_table(d, multi))]
    return out


def _summary(devices: list[dict[str, Any]]) -> Table:
    rows = []
    for d in devices:
        front = [c for c in d["cells"] if c["pareto"]]
        rows.append([d["device_id"], str(len(d["cells"])), str(sum(c["unstable"] for c in d["cells"])), str(len(d["failed"])),
                     str(len(d["estimates"])),
                     "; ".join(f"{c['artifact']} ({fmt_ms(c['p50_ms'])} ms, {fmt_pct(c['quality'])})" for c in front) or NONE])
    return Table(["device", "measured", "unstable", "failed", "estimated", "Pareto front: artifact (p50, quality)"], rows,
                 numeric={1, 2, 3, 4})


def _notes(c: dict[str, Any]) -> str:
    notes = ["Pareto front"] if c.get("pareto") else []
    if c["unstable"]:
        notes.append("unstable" + (": " + "; ".join(map(str, c["unstable_reasons"])) if c["unstable_reasons"] else ""))
    return ", ".join(notes)


def _cells_table(d: dict[str, Any], multi: bool) -> Table:
    head = ["run"] * multi + ["artifact", "format", "precision", "runtime", "threads", "p50 ms", "p90 ms", "p99 ms", "CV %",
                              "n", "size", "accuracy", "teacher agree", "notes"]
    rows, classes = [], []
    for c in d["cells"]:
        rows.append([str(c["run_id"])] * multi + [c["artifact"], c["format"], c["precision"], c["runtime"], str(c["threads"]),
                    fmt_ms(c["p50_ms"]), fmt_ms(c["p90_ms"]), fmt_ms(c["p99_ms"]), fmt_num(c["cv_percent"]),
                    NONE if c["n"] is None else str(c["n"]), fmt_bytes(c["model_bytes"]), fmt_pct(c["accuracy"]),
                    fmt_pct(c["teacher_top1_agreement"]), _notes(c)])  # fmt: skip
        classes.append(" ".join(k for k in ("pareto", "unstable") if c.get(k)))
    return Table(head, rows, numeric={i + multi for i in range(4, 13)}, row_classes=classes)


def _generative_table(cells: list[dict[str, Any]], multi: bool) -> Table:
    head = ["run"] * multi + ["artifact", "precision", "runtime", "threads", "prompt + new tokens", "TTFT ms",
                              "prefill tok/s", "decode tok/s", "exact match", "teacher agree"]
    rows = [[str(c["run_id"])] * multi + [c["artifact"], c["precision"], c["runtime"], str(c["threads"]),
             f"{c['prompt_tokens']} + {c['generated_tokens']}", fmt_ms(c["ttft_ms"]),
             fmt_num(c["prefill_tokens_per_s"], 0), fmt_num(c["decode_tokens_per_s"]), fmt_pct(c["accuracy"]),
             fmt_pct(c["teacher_top1_agreement"])] for c in cells]  # fmt: skip
    return Table(head, rows, numeric={i + multi for i in range(3, 10)})


def _estimates_table(d: dict[str, Any], multi: bool) -> Table:
    head = ["run"] * multi + ["artifact", "format", "precision", "runtime", "threads", "kind", "p50 ms (estimated)",
                              "low–high ms", "size", d["quality_label"] + " (measured elsewhere)"]
    rows = []
    for e in d["estimates"]:
        low_high = NONE if e["low_ms"] is None or e["high_ms"] is None else f"{fmt_ms(e['low_ms'])}–{fmt_ms(e['high_ms'])}"
        quality = NONE if e["quality"] is None else f"{fmt_pct(e['quality'])} ({e['quality_source']})"
        rows.append([str(e["run_id"])] * multi + [e["artifact"], e["format"], e["precision"], e["runtime"], str(e["threads"]),
                    "estimated", fmt_ms(e["p50_ms"]), low_high, fmt_bytes(e["model_bytes"]), quality])  # fmt: skip
    return Table(head, rows, numeric={i + multi for i in (4, 6, 7, 8)}, row_classes=["estimated"] * len(rows))


def _pairs_table(pairs: list[dict[str, Any]], multi: bool, estimated: bool = False) -> Table:
    head = ["run"] * multi + ["int8 file", "fp32 file", "runtime", "threads", "fp32 p50 ms", "int8 p50 ms", "speed-up",
                              "accuracy fp32 → int8", "acc drop (pts)", "agree drop (pts)", "size", "notes"]
    rows, classes = [], []
    for p in pairs:
        notes = ["estimated"] * estimated + ["unstable cell"] * bool(p["unstable"])
        if p["speedup"] is not None and p["speedup"] < 1:
            notes.append("int8 slower")
        accuracy = NONE if p["fp32_accuracy"] is None else f"{fmt_pct(p['fp32_accuracy'])} → {fmt_pct(p['int8_accuracy'])}"
        rows.append([str(p["run_id"])] * multi + [p["int8"], p["fp32"], p["runtime"], str(p["threads"]),
                    fmt_ms(p["fp32_p50_ms"]), fmt_ms(p["int8_p50_ms"]), fmt_ratio(p["speedup"]), accuracy,
                    fmt_points(p["accuracy_drop_points"]), fmt_points(p["agreement_drop_points"]),
                    fmt_ratio(p["size_ratio"]), ", ".join(notes)])  # fmt: skip
        classes.append(" ".join(["estimated"] * estimated + ["unstable"] * bool(p["unstable"])))
    return Table(head, rows, numeric={i + multi for i in range(3, 11)}, row_classes=classes)


def _parity_table(rows: list[dict[str, Any]], multi: bool) -> Table:
    head = ["run"] * multi + ["artifact", "precision", "runtime", "output", "max abs", "max rel", "cosine", "SQNR dB",
                              "top-1 agree", "top-1 (ties)", "validation", "source"]
    out, classes = [], []
    for r in rows:
        verdict = NONE if r["passed"] is None else "pass" if r["passed"] else "FAIL"
        out.append([str(r["run_id"])] * multi + [r["artifact"], str(r["precision"]), str(r["runtime"]), str(r["output"]),
                   fmt_sci(r["max_abs"]), fmt_sci(r["max_rel"]), fmt_num(r["cosine"], 6), fmt_num(r["sqnr_db"]),
                   fmt_pct(r["top1_agreement"]), fmt_pct(r["top1_agreement_with_ties"]), verdict, r["source"]])  # fmt: skip
        classes.append("failed" if r["passed"] is False else "")
    return Table(head, out, numeric={i + multi for i in range(4, 10)}, row_classes=classes)


def _teacher_table(rows: list[dict[str, Any]], multi: bool) -> Table:
    head = ["run"] * multi + ["device", "artifact", "precision", "runtime", "top-1 agreement", "KL (nats)", "accuracy"]
    return Table(head, [[str(r["run_id"])] * multi + [r["device_id"], r["artifact"], r["precision"], r["runtime"],
                        fmt_pct(r["teacher_top1_agreement"]), fmt_num(r["teacher_kl"], 4), fmt_pct(r["accuracy"])]
                        for r in rows], numeric={i + multi for i in (4, 5, 6)})  # fmt: skip


def _provenance(r: dict[str, Any]) -> list[tuple[str, str]]:
    kv = [("time (UTC)", r.get("created_at")), ("command", r.get("command")), ("label", r.get("label")),
          ("git ref", r.get("git_ref")), ("git commit", _commit(r)), ("recipe sha256", r.get("recipe_sha256")),
          ("edgestill version", r.get("package_version")), ("machine", r.get("machine"))]  # fmt: skip
    for h in r["hosts"]:
        mem = f", {h['mem_total_mb'] / 1024:.1f} GiB" if h.get("mem_total_mb") else ""
        system = " ".join(str(h[k]) for k in ("os", "kernel", "arch") if h.get(k))
        python = f"; Python {h['python']}" if h.get("python") else ""
        host = f"{h.get('cpu_model') or NONE}, {h.get('cpu_count') or '?'} cores{mem}; {system}{python}"
        kv.append((f"host {h['device_id']}", host))
    if r["runtimes"]:
        kv.append(("runtimes", ", ".join(f"{k} {v}" for k, v in r["runtimes"].items())))
    if r["tools"]:
        kv.append(("export tools", ", ".join(f"{k} {v}" for k, v in r["tools"].items())))
    return [(k, str(v)) for k, v in kv if v not in (None, "")]


# -- HTML ----------------------------------------------------------------------------------------------------------


def _h(text: object) -> str:
    return _html.escape(str(text), quote=True)


_CSS = """
:root{--ink:#1d2330;--muted:#5b6474;--line:#dfe3ea;--band:#f6f8fb;--accent:#0072B2;--warn:#D55E00}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--ink);background:#fff}
main{max-width:1440px;margin:0 auto;padding:28px 32px 64px}
h1{font-size:1.55rem;margin:0 0 .3rem}
h2{font-size:1.22rem;margin:2.4rem 0 .6rem;padding-bottom:.3rem;border-bottom:2px solid var(--line)}
h3{font-size:1.02rem;margin:1.5rem 0 .5rem}
p{margin:.4rem 0}
.note{color:var(--muted);font-size:.88rem}
.scroll{overflow-x:auto;margin:.4rem 0 .8rem}
table{border-collapse:collapse;font-size:.84rem}
th,td{padding:5px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{white-space:nowrap}
td{min-width:4em}
th{background:var(--band);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;min-width:0}
tr.pareto td:first-child{box-shadow:inset 4px 0 0 var(--accent)}
tr.pareto td{font-weight:600}
tr.unstable td{background:#fff3e8}
tr.estimated td{font-style:italic;color:#3d4451;background:#f7f5fb}
tr.failed td{background:#fdecec}
figure{margin:.6rem 0 1rem}
figure svg{max-width:100%;height:auto;display:block}
figcaption{color:var(--muted);font-size:.85rem;max-width:900px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;font-size:.88rem;margin:.3rem 0}
dt{color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
ul.failed li{margin:.25rem 0;overflow-wrap:anywhere}
details{font-size:.85rem;color:var(--muted);margin:.2rem 0 .8rem}
details li{overflow-wrap:anywhere}
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _html_table(t: Table) -> str:
    head = "".join(f'<th{" class=num" if i in t.numeric else ""}>{_h(x)}</th>' for i, x in enumerate(t.headers))
    body = []
    for r, row in enumerate(t.rows):
        cls = t.row_classes[r] if r < len(t.row_classes) and t.row_classes[r] else ""
        cells = "".join(f'<td{" class=num" if i in t.numeric else ""}>{_h(x)}</td>' for i, x in enumerate(row))
        body.append(f'<tr class="{_h(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _html_chart(device: dict[str, Any], chart_id: str) -> str:
    from edgestill.benchmarks.charts import accuracy_latency_svg

    svg = accuracy_latency_svg(device, chart_id=chart_id)
    if svg is None:
        return f'<p class="note">No chart: no cell on this device has both a latency and {_h(device["quality_label"])}.</p>'
    caption = (f"{device['quality_label']} against p50 latency. Colour: format; shape: precision; marker area: model size. "
               "Ringed in black and joined by the dotted line: the Pareto front of measured cells (nothing else is both "
               "faster and better). Dashed orange edge: unstable measurement. Hollow markers with bars: estimates "
               "(low–high), not measurements.")  # fmt: skip
    return f"<figure>{svg}<figcaption>{_h(caption)}</figcaption></figure>"


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched."""
    parts: list[str] = []
    for block in outline(report):
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{_h(block[1])}</{kind}>")
        elif kind in ("p", "note"):
            parts.append(f'<p class="note">{_h(block[1])}</p>' if kind == "note" else f"<p>{_h(block[1])}</p>")
        elif kind == "table":
            parts.append(_html_table(block[1]))
        elif kind == "list":
            parts.append('<ul class="failed">' + "".join(f"<li>{_h(x)}</li>" for x in block[1]) + "</ul>")
        elif kind == "details":
            parts.append(f"<details><summary>{_h(block[1])}</summary><ul>" + "".join(f"<li>{_h(x)}</li>" for x in block[2])
                         + "</ul></details>")  # fmt: skip
        elif kind == "kv":
            parts.append("<dl>" + "".join(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in block[1]) + "</dl>")
        elif kind == "chart":
            parts.append(_html_chart(block[1], block[2]))
    title = outline_title(report)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_h(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(parts) + "\n</main>\n</body>\n</html>\n")  # fmt: skip


def outline_title(report: dict[str, Any]) -> str:
    return "edgestill report: " + "; ".join(_run_name(r) for r in report["runs"])


# -- Markdown ------------------------------------------------------------------------------------------------------

_MD_SPECIAL = "\\`*_[]|~#"


def md_text(text: object) -> str:
    """Plain text as Markdown that renders as the same text: HTML characters as entities (so ``<script>`` is text,
    not a tag), Markdown punctuation and table pipes backslash-escaped, line breaks as spaces."""
    s = _html.escape(str(text), quote=False)
    s = "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in s)
    return " ".join(s.split())


def _md_table(t: Table) -> str:
    lines = ["| " + " | ".join(md_text(h) for h in t.headers) + " |",
             "|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(t.headers))) + "|"]
    lines += ["| " + " | ".join(md_text(x) for x in row) + " |" for row in t.rows]
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (GitHub-flavoured tables); the charts are in the HTML report only."""
    parts: list[str] = []
    marks = {"h1": "#", "h2": "##", "h3": "###"}
    for block in outline(report):
        kind = block[0]
        if kind in marks:
            parts.append(f"{marks[kind]} {md_text(block[1])}")
        elif kind == "p":
            parts.append(md_text(block[1]))
        elif kind == "note":
            parts.append(f"_{md_text(block[1])}_")
        elif kind == "table":
            parts.append(_md_table(block[1]))
        elif kind == "list":
            parts.append("\n".join(f"- {md_text(x)}" for x in block[1]))
        elif kind == "details":
            parts.append(f"{md_text(block[1])}:\n\n" + "\n".join(f"- {md_text(x)}" for x in block[2]))
        elif kind == "kv":
            parts.append("\n".join(f"- **{md_text(k)}**: {md_text(v)}" for k, v in block[1]))
    return "\n\n".join(parts) + "\n"
