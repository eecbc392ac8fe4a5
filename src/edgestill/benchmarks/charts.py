"""Charts for the report: matplotlib figures rendered as SVG text that an HTML file can inline.

Text stays text (``svg.fonttype: none``: a browser draws it and a reader can search and copy it) and matplotlib
escapes it, so a model name is never markup. ``svg.hashsalt`` is fixed per chart, so the same report data gives
the same bytes, and two charts in one page never share an element id. Only the object-oriented ``Figure`` API is
used (no pyplot): no GUI backend is touched and no global figure state is left behind.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
FORMAT_COLOURS = {"onnx": "#0072B2", "tflite": "#E69F00", "openvino": "#009E73"}
OTHER_COLOURS = ("#CC79A7", "#56B4E9", "#D55E00", "#000000")
PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "mixed": "^"}  # every int8 variant is a diamond
INT8_MARKER = "D"
MAX_MARKER_AREA_PT2 = 420.0  # the largest model's marker; marker area is proportional to model bytes
MIN_MARKER_AREA_PT2 = 28.0  # so that a tiny model is still visible
UNKNOWN_SIZE_AREA_PT2 = 60.0
LOG_X_RATIO = 12.0  # latencies spanning more than this factor are drawn on a log axis
UNSTABLE_EDGE = "#D55E00"


def accuracy_latency_svg(device: dict[str, Any], *, chart_id: str) -> str | None:
    """Accuracy (or teacher agreement) against p50 latency for one device's cells, as an inline ``<svg>`` element.

    Measured cells are filled markers, the Pareto front is joined by a line and ringed in black, unstable cells have a
    dashed orange edge, and estimates are hollow markers with low–high bars. Colour shows the format, shape the
    precision, marker area the model size.

    Args:
        device: one entry of ``build_report(...)["devices"]`` (``cells``, ``estimates``, ``quality_label``).
        chart_id: the ``id`` of the ``<svg>`` element and the seed of its element ids; unique within a page.

    Returns:
        The ``<svg>`` element as text (no XML prolog, no namespace URLs), or None when no cell has both a latency
        and a quality value to place.
    """
    measured = [c for c in device["cells"] if _placeable(c)]
    estimated = [c for c in device["estimates"] if _placeable(c)]
    if not measured and not estimated:
        return None
    import matplotlib  # lazily: the report's data step and the CLI's --md path never pay for it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rc = {"svg.fonttype": "none", "svg.hashsalt": f"edgestill-{chart_id}", "svg.id": chart_id,
          "text.parse_math": False, "font.size": 9.0, "axes.spines.top": False, "axes.spines.right": False}  # fmt: skip
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(8.4, 4.6))
        FigureCanvasAgg(fig)  # Agg measures the labels' text so that they can be placed apart; savefig writes SVG
        ax = fig.add_subplot()
        everything = measured + estimated
        max_bytes = max((c["model_bytes"] or 0) for c in everything) or None
        colours = _colour_map(sorted({c["format"] for c in everything}))
        labels = _draw_points(ax, measured, estimated, colours, max_bytes)
        _set_axes(ax, everything, estimated, device["quality_label"])
        key = _place_labels(fig, ax, labels)
        _legends(fig, ax, measured, estimated, colours, max_bytes, key)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    return _inline(buf.getvalue(), chart_id=chart_id, title=f"{device['quality_label']} against p50 latency on {device['device_id']}")


_Label = tuple[str, dict[str, Any], dict[str, Any], float]  # text, cell, text style, marker area (pt²)


def _draw_points(ax: Any, measured: list[dict], estimated: list[dict], colours: dict[str, str],
                 max_bytes: float | None) -> list[_Label]:  # fmt: skip
    """Markers for measured cells (filled; the front ringed and joined, unstable ones dashed orange) and estimates
    (hollow, with low–high bars); returns the labels still to place."""
    labels: list[_Label] = []
    for c in measured:
        unstable, area, xy = c.get("unstable", False), _area(c["model_bytes"], max_bytes), ([c["p50_ms"]], [c["quality"] * 100])
        edge = UNSTABLE_EDGE if unstable else "black" if c["pareto"] else "white"
        ax.scatter(*xy, s=area, marker=_marker(c["precision"]), color=colours[c["format"]], alpha=0.85, zorder=3,
                   edgecolors=edge, linewidths=2.0 if unstable or c["pareto"] else 0.8, linestyle="--" if unstable else "-")
        labels.append((c["artifact"] + (" (unstable)" if unstable else ""), c, {"color": "#333333"}, area))
    front = sorted((c for c in measured if c["pareto"]), key=lambda c: c["p50_ms"])
    if len(front) > 1:
        ax.plot([c["p50_ms"] for c in front], [c["quality"] * 100 for c in front], color="black", lw=1.0, ls=":",
                drawstyle="steps-post", zorder=2, gid="pareto-front")  # fmt: skip
    for c in estimated:
        area, xy = _area(c["model_bytes"], max_bytes), ([c["p50_ms"]], [c["quality"] * 100])
        if c.get("low_ms") is not None and c.get("high_ms") is not None:
            below, above = max(c["p50_ms"] - c["low_ms"], 0.0), max(c["high_ms"] - c["p50_ms"], 0.0)
            ax.errorbar(*xy, xerr=[[below], [above]], fmt="none", ecolor=colours[c["format"]], elinewidth=1.2, capsize=4, zorder=2)
        ax.scatter(*xy, s=area, marker=_marker(c["precision"]), facecolors="none", edgecolors=colours[c["format"]],
                   linewidths=1.6, zorder=3)  # fmt: skip
        labels.append((c["artifact"] + " (estimated)", c, {"color": "#555555", "style": "italic"}, area))
    return labels


def _set_axes(ax: Any, everything: list[dict], estimated: list[dict], quality_label: str) -> None:
    """Limits with room for the names, a log latency axis when latencies span more than ``LOG_X_RATIO``, labels."""
    xs = [c["p50_ms"] for c in everything] + [c[k] for c in estimated for k in ("low_ms", "high_ms") if c.get(k)]
    lo, hi = min(xs), max(xs)
    log_x = lo > 0 and hi / lo > LOG_X_RATIO
    if log_x:
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.35, hi * 1.6)
    else:
        span = (hi - lo) or max(hi, 1e-9)
        ax.set_xlim(max(lo - span * 0.12, 0.0), hi + span * 0.35)
    ys = [c["quality"] * 100 for c in everything]
    pad = max((max(ys) - min(ys)) * 0.12, 1.0)
    ax.set_ylim(max(min(ys) - pad, 0.0), max(ys) + pad)
    ax.set_xlabel("p50 latency (ms" + (", log scale" if log_x else "") + ") — lower is better")
    ax.set_ylabel(quality_label + " (%) — higher is better")
    ax.grid(True, color="#dddddd", linewidth=0.6, zorder=0)


def _legends(fig: Any, ax: Any, measured: list[dict], estimated: list[dict], colours: dict[str, str],
             max_bytes: float | None, key: list[str]) -> None:  # fmt: skip
    """What colour, shape, ring, edge, hollowness and size mean (right of the axes); below them the names of
    numbered points when the names did not fit beside their markers."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=colours[f], markersize=7, label=f) for f in colours]
    precisions = sorted({_precision_group(c["precision"]) for c in measured + estimated})
    handles += [Line2D([], [], ls="", marker=_marker(p), color="#777777", markersize=7, label=p) for p in precisions]
    if measured:
        handles.append(Line2D([], [], ls=":", color="black", marker="o", markerfacecolor="#bbbbbb", markeredgecolor="black",
                              markeredgewidth=2.0, label="Pareto front (measured)"))  # fmt: skip
    if any(c.get("unstable") for c in measured):
        handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="#bbbbbb", markeredgecolor=UNSTABLE_EDGE,
                              markeredgewidth=2.0, label="unstable (not reliable)"))  # fmt: skip
    if estimated:
        handles.append(Line2D([], [], ls="-", marker="o", color="#777777", markerfacecolor="none",
                              label="estimated, low–high (not measured)"))  # fmt: skip
    if max_bytes:
        handles += [Line2D([], [], ls="", marker="o", color="#bbbbbb", markersize=math.sqrt(_area(max_bytes * f, max_bytes)),
                           label=f"size {_fmt_bytes(max_bytes * f)}") for f in (1.0, 0.25)]  # fmt: skip
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8, labelspacing=0.9,
              borderaxespad=0.0)  # fmt: skip
    if key:  # a figure legend: an axes legend outside the axes would be clipped by them
        blank = [Line2D([], [], ls="", marker="") for _ in key]
        fig.legend(blank, key, loc="upper left", bbox_to_anchor=(0.0, -0.16), bbox_transform=ax.transAxes, frameon=False,
                   fontsize=7.5, handlelength=0, handletextpad=0, ncols=2 if len(key) > 4 else 1, columnspacing=2.5,
                   title="points (numbered from the fastest)", title_fontsize=7.5, alignment="left")  # fmt: skip


def _label_spots(radius_pt: float) -> list[tuple[float, float]]:
    """Where a point's label may go, as offsets in points from the point, in the order they are tried: beside the
    marker on the right, above or below it, then the same on its left."""
    side, up = radius_pt + 3, radius_pt + 6
    return [(side, 0.0), (side * 0.6, up), (side * 0.6, -up), (-side, 0.0), (-side * 0.6, up), (-side * 0.6, -up)]


def _place_labels(fig: Any, ax: Any, labels: list[tuple[str, dict[str, Any], dict[str, Any], float]]) -> list[str]:
    """Label each point beside its marker with its name, clear of other names, markers and the axes' edges.

    When a name finds no free spot beside its marker, every point is numbered instead (numbers fit where names do
    not) and the numbered names are returned for a key; else an empty list.
    """
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    frame = ax.get_window_extent(renderer)
    markers = []  # and the low–high bars of estimates and the front's steps: a name on a line is hard to read
    for line in ax.get_lines():
        if line.get_gid() == "pareto-front":
            xy = ax.transData.transform(line.get_xydata())
            for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):  # steps-post: along at y0, then up to y1
                markers.append(Bbox([[x0, y0 - 2 * px_per_pt], [x1, y0 + 2 * px_per_pt]]))
                markers.append(Bbox([[x1 - 2 * px_per_pt, min(y0, y1)], [x1 + 2 * px_per_pt, max(y0, y1)]]))
    for _, c, _, area in labels:
        x, y = ax.transData.transform((c["p50_ms"], c["quality"] * 100))
        half = math.sqrt(area) / 2 * px_per_pt
        markers.append(Bbox([[x - half, y - half], [x + half, y + half]]))
        if c.get("kind") == "estimated" and c.get("low_ms") is not None and c.get("high_ms") is not None:
            (x0, _), (x1, _) = ax.transData.transform([(c["low_ms"], 0.0), (c["high_ms"], 0.0)])
            markers.append(Bbox([[x0, y - 3 * px_per_pt], [x1, y + 3 * px_per_pt]]))
    ordered = sorted(labels, key=lambda t: (t[1]["p50_ms"], -t[1]["quality"]))

    def place(texts: list[str]) -> bool:
        obstacles, clean = list(markers), True
        for text, (_, c, style, area) in zip(texts, ordered):
            best = None
            for dx, dy in _label_spots(math.sqrt(area) / 2):
                ann = ax.annotate(text, (c["p50_ms"], c["quality"] * 100), xytext=(dx, dy), textcoords="offset points",
                                  fontsize=7.5, zorder=4, ha="left" if dx > 0 else "right", va="center", **style)
                box = ann.get_window_extent(renderer).expanded(1.02, 1.2)
                outside = box.width * box.height - _overlap_area(box, frame)
                cost = sum(_overlap_area(box, o) for o in obstacles) + 4 * outside
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, ann, box)
                else:
                    ann.remove()
                if cost == 0:
                    break
            obstacles.append(best[2])
            placed.append(best[1])
            clean = clean and best[0] == 0
        return clean

    placed: list[Any] = []
    if place([t[0] for t in ordered]):
        return []
    for ann in placed:
        ann.remove()
    placed.clear()
    numbers = [str(i + 1) for i in range(len(ordered))]
    place(numbers)
    return [f"{n}  {t[0]}" for n, t in zip(numbers, ordered)]


def _overlap_area(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _placeable(cell: dict[str, Any]) -> bool:
    return cell.get("p50_ms") is not None and cell["p50_ms"] > 0 and cell.get("quality") is not None


def _precision_group(precision: str) -> str:
    return "int8" if precision.startswith("int8") else precision


def _marker(precision: str) -> str:
    return INT8_MARKER if precision.startswith("int8") else PRECISION_MARKERS.get(precision, "v")


def _colour_map(formats: list[str]) -> dict[str, str]:
    others = iter(OTHER_COLOURS * (1 + len(formats) // len(OTHER_COLOURS)))
    return {f: FORMAT_COLOURS.get(f) or next(others) for f in formats}


def _area(model_bytes: float | None, max_bytes: float | None) -> float:
    if not model_bytes or not max_bytes:
        return UNKNOWN_SIZE_AREA_PT2
    return max(MAX_MARKER_AREA_PT2 * model_bytes / max_bytes, MIN_MARKER_AREA_PT2)


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


_NAMESPACES = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')
_COMMENTS = re.compile(r"<!--.*?-->", re.DOTALL)


def _inline(svg: str, *, chart_id: str, title: str) -> str:
    """matplotlib's SVG document as an element for an HTML page: no XML prolog, doctype, comments or namespace
    declarations (the HTML parser places inline ``<svg>`` in the SVG namespace itself), its style sheet scoped to
    this chart (inline, it would apply to the whole page), with an accessible name."""
    from html import escape

    svg = _COMMENTS.sub("", svg[svg.index("<svg"):])
    svg = svg.replace('<style type="text/css">*{', f'<style type="text/css">#{chart_id} *{{')
    head_end = svg.index(">")
    head = _NAMESPACES.sub("", svg[:head_end])
    return f'{head} role="img" aria-label="{escape(title)}">' + svg[head_end + 1:].strip()
