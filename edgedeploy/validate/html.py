"""report.html: one self-contained page (plots embedded as base64 PNG, no scripts, no outside resources).

It renders the same sections as report.md (edgedeploy.validate.report.sections), so every heading of the Markdown is
a heading here, and adds plots where a picture says more (matplotlib, Agg backend; imported only here): error per
output against its budget and at quantiles; for detection AP per class, the precision-recall curves of the artifact
and the reference, the confusion matrix and the images where the two disagree most, drawn with both sets of boxes
and the labels (bounded: edgedeploy.tasks.detection.DISAGREEING_IMAGES images, downscaled); per-layer INT8 error
(local and cumulative), latency histogram and CDF per batch size, and latency against accuracy when other
precisions of the model were built beside this one.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgedeploy.tasks.detection import DetectionRecord, DisagreeingImage
from edgedeploy.tensor_error import ABS_ERROR_QUANTILES
from edgedeploy.validate.record import Check, LatencyRow, Report, TensorErrors
from edgedeploy.validate.report import (Table, accuracy_of, first_latency, header, num, sections, verdict,
                                        worst_rel_l2)

PICTURE_SIDE = 320  # pixels: the longer side of each drawn image, which bounds the page's size

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}h3{font-size:1.05em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child,td.text{text-align:left}
.pass{color:#176f2c}.fail{color:#b00020;font-weight:bold}.skip{color:#777}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff}
.vpass{background:#2e7d32}.vwarn{background:#e08a00}.vfail{background:#c62828}.warn{background:#fff4e5;border-left:4px solid #f0a000;padding:6px 10px}
.checks td:nth-child(2),.checks td:last-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
"""


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display on CI runners and devices
    import matplotlib.pyplot as plt

    return plt


def _png(fig, dpi: int = 90) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _inline(text: str) -> str:
    """A report.md paragraph (Markdown inline: `code`, **bold**) as HTML."""
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def plot_latency(latency: list[LatencyRow]) -> str | None:
    plt = _plt()

    series = [t for t in latency if t.samples_ms]
    if not series:
        return None
    fig, (ax_h, ax_c) = plt.subplots(1, 2, figsize=(11, 3.6))
    for t in series:
        ms = np.sort(np.asarray(t.samples_ms))
        label = f"batch {t.batch} (median {t.median_ms:.3g} ms)"
        ax_h.hist(ms, bins=min(50, max(10, ms.size // 4)), alpha=0.6, label=label)
        ax_c.plot(ms, np.arange(1, ms.size + 1) / ms.size, label=label)
        if t.p99_ms is not None:
            ax_c.axvline(t.p99_ms, ls=":", lw=0.8, color=ax_c.lines[-1].get_color())
    ax_h.set(title="Latency histogram", xlabel="ms per call", ylabel="calls")
    ax_c.set(title="Latency CDF (dotted: p99)", xlabel="ms per call", ylabel="fraction of calls ≤ x", ylim=(0, 1.01))
    ax_h.legend(fontsize=8)
    ax_c.legend(fontsize=8, loc="lower right")
    ax_c.grid(alpha=0.3)
    return _png(fig)


def plot_errors(tensors: dict[str, TensorErrors], checks: list[Check]) -> str | None:
    plt = _plt()

    if not tensors:
        return None
    names = list(tensors)
    limits = {c.name[: -len(".rel_l2")]: c.limit for c in checks if c.name.endswith(".rel_l2") and c.group == "tensor"}
    fig, (ax_b, ax_q) = plt.subplots(1, 2, figsize=(11, 3.6))
    vals = [max(tensors[n].rel_l2, 1e-12) for n in names]
    colors = ["#c62828" if n in limits and tensors[n].rel_l2 > limits[n] else "#1f77b4" for n in names]
    x = np.arange(len(names))
    ax_b.bar(x, vals, color=colors)
    drawn = False
    for i, n in enumerate(names):
        if n in limits:
            ax_b.hlines(limits[n], i - 0.4, i + 0.4, colors="k", linestyles="--", label=None if drawn else "budget")
            drawn = True
        if not tensors[n].finite:
            ax_b.annotate("NaN/Inf", (i, vals[i]), ha="center", va="bottom", color="#c62828")
    ax_b.set_xticks(x, names, rotation=30 if len(names) > 4 else 0)
    title = "Relative L2 error per output" + (" (dashed: its budget)" if drawn else " (no budget set)")
    ax_b.set(yscale="log", title=title, ylabel="relative L2 error (floor 1e-12 = exact)")
    if drawn:
        ax_b.legend(fontsize=8)
    qs = np.arange(len(ABS_ERROR_QUANTILES))
    for n in names:
        q = tensors[n].abs_error_quantiles
        if q:
            ax_q.plot(qs, [max(v, 1e-12) for v in q], marker="o", label=n)
    ax_q.set(yscale="log", title="Absolute error at quantiles, per output", xlabel="quantile of |error|",
             ylabel="|artifact − reference| (floor 1e-12)")
    ax_q.set_xticks(qs, ["p50", "p90", "p99", "p99.9", "max"][: len(qs)])
    ax_q.legend(fontsize=8)
    ax_q.grid(alpha=0.3)
    return _png(fig)


def plot_layers(layers: list[dict]) -> str | None:
    """Per-layer INT8 error, worst 30 by the error the layer adds alone (bars), with its output's cumulative error
    in the quantized graph (dots): a long bar is a layer to keep in float, a dot far right of its bar is error
    carried in from earlier layers."""
    plt = _plt()
    if not layers:
        return None
    rows = sorted(layers, key=lambda r: -(r.get("rel_l2") or 0.0))[:30][::-1]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(11, 0.28 * len(rows) + 1.4))
    ax.barh(y, [max(r.get("rel_l2") or 0.0, 1e-12) for r in rows], color="#8e24aa",
            label="the layer alone on float inputs (local)")
    cumulative = [r.get("cumulative_rel_l2") for r in rows]
    if any(c is not None for c in cumulative):
        ax.scatter([max(c or 0.0, 1e-12) for c in cumulative], y, color="#ef6c00", zorder=3, s=14,
                   label="its output in the quantized graph (cumulative)")
    ax.set_yticks(y, [r["layer"] for r in rows], fontsize=7)
    ax.set(xscale="log", title=f"Per-layer INT8 error, worst {len(rows)} of {len(layers)} quantized layers",
           xlabel="relative L2 error vs the float graph")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def plot_ap_per_class(task: DetectionRecord) -> str | None:
    """AP@0.5 per class, the artifact's bars beside the reference's."""
    ap, ref = task.ap50_per_class, task.reference_ap50_per_class or {}
    if not ap or task.map50 is None:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 2.8))
    x = np.arange(len(ap))
    ax.bar(x - 0.2, list(ap.values()), width=0.4, color="#1f77b4", label="artifact")
    ax.bar(x + 0.2, [ref.get(c, 0.0) for c in ap], width=0.4, color="#9e9e9e", label="reference")
    ax.axhline(task.map50, ls="--", color="k", lw=0.8, label=f"artifact mAP@0.5 {task.map50:.4f}")
    ax.set_xticks(x, list(ap), rotation=45 if len(ap) > 12 else 0, fontsize=7 if len(ap) > 12 else 9)
    ax.set(title="AP@0.5 per class (vs labels)", xlabel="class", ylabel="AP@0.5", ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def plot_pr_curve(task: DetectionRecord) -> str | None:
    """Precision against recall at IoU 0.5 (COCOeval's 101 points, mean over classes): artifact and reference."""
    pr = task.pr_curve
    if pr is None:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(pr.recall, pr.reference, color="#9e9e9e", lw=2.5, label=f"reference (mAP@0.5 {num(task.reference_map50)})")
    ax.plot(pr.recall, pr.artifact, color="#1f77b4", lw=1.2, label=f"artifact (mAP@0.5 {num(task.map50)})")
    ax.set(title="Precision-recall at IoU 0.5 (mean over classes)", xlabel="recall", ylabel="precision",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_confusion(task: DetectionRecord) -> str | None:
    """The confusion matrix as a heat map, counts written in the cells while they fit."""
    c = task.confusion
    if c is None:
        return None
    plt = _plt()
    m = np.asarray(c.matrix)
    side = min(11.0, 1.5 + 0.45 * len(c.classes))
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    ax.imshow(np.log1p(m), cmap="Blues")
    if len(c.classes) <= 30:
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if v > m.max() / 2 else "black")
    ticks = np.arange(len(c.classes))
    ax.set_xticks(ticks, c.classes, rotation=90, fontsize=7)
    ax.set_yticks(ticks, c.classes, fontsize=7)
    ax.set(title=f"Confusion matrix (confidence ≥ {num(c.score_thres)}, IoU ≥ {num(c.iou_thres)})",
           xlabel="detected class", ylabel="labelled class")
    return _png(fig)


def plot_disagreeing(task: DetectionRecord, pictures: Mapping[int, np.ndarray]) -> str | None:
    """The images where the artifact and the reference disagree most, each with the labels (green, dashed), the
    reference's detections (orange) and the artifact's (blue); an image without pixels is left out."""
    shown: list[tuple[DisagreeingImage, np.ndarray]] = [(d, pictures[d.image]) for d in task.disagreeing or []
                                                        if d.image in pictures]
    if not shown:
        return None
    plt = _plt()
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.5), squeeze=False)
    for ax, (d, image) in zip(axes[0], shown):
        h, w = image.shape[:2]
        step = max(1, -(-max(h, w) // PICTURE_SIDE))  # every n-th pixel: the page stays small
        ax.imshow(image[::step, ::step], extent=(0, w, h, 0))
        for rows, color, style, first in (((d.labels or []), "#2e7d32", "--", 1), (d.reference, "#ef6c00", "-", 0),
                                          (d.artifact, "#1565c0", "-", 0)):
            for row in rows:
                x1, y1, x2, y2 = row[first:first + 4]
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2, ls=style, ec=color))
                cls = int(row[0] if first else row[5])
                ax.text(x1, y1, _class_name(task, cls), fontsize=6, color="white", va="bottom",
                        bbox={"facecolor": color, "pad": 0.5, "lw": 0})
        ax.set_title(f"image {d.image}: disagreement {num(d.disagreement)}", fontsize=8)
        ax.axis("off")
    fig.legend(handles=[Rectangle((0, 0), 1, 1, fill=False, ec=c, ls=ls, label=label) for c, ls, label in (
        ("#2e7d32", "--", "label"), ("#ef6c00", "-", "reference"), ("#1565c0", "-", "artifact"))],
        loc="lower center", ncol=3, fontsize=8)
    return _png(fig, dpi=72)


def _class_name(task: DetectionRecord, cls: int) -> str:
    names = task.confusion.classes if task.confusion is not None else []
    return names[cls] if cls < len(names) - 1 else str(cls)


def plot_tradeoff(reports: list[Report]) -> str | None:
    """Latency against accuracy for the artifacts of one model built side by side (the comparison section)."""
    points = []
    for r in reports:
        label, value = accuracy_of(r)
        median, batch = first_latency(r)
        if median is not None:
            points.append((f"{r.target} {r.precision}", median, batch, label, value, worst_rel_l2(r)))
    if len(points) < 2:
        return None
    plt = _plt()
    use_task = all(p[4] is not None for p in points) and len({p[3] for p in points}) == 1
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, ms, _, _, value, worst in points:
        y = value if use_task else max(worst or 0.0, 1e-12)
        ax.scatter([ms], [y], s=30)
        ax.annotate(name, (ms, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    batch = points[0][2]
    ax.set(title="Latency vs accuracy of the artifacts built side by side",
           xlabel=f"median latency at batch {batch} (ms)",
           ylabel=points[0][3] if use_task else "worst relative L2 error vs reference (lower is better)")
    if not use_task:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    return _png(fig)


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None, css: str = "") -> str:
    out = [f"<table class='{css}'><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_inline(num(v))}</td>" for v in row) + "</tr>")
    return "".join(out) + "</table>"


def _plots(key: str, report: Report, siblings: list[Report], pictures: Mapping[int, np.ndarray]) -> list[str]:
    """The plots that belong under section `key`."""
    if key == "outputs":
        made = [(plot_errors(report.tensors, report.checks), "error per output")]
    elif key == "task" and isinstance(report.task, DetectionRecord):
        made = [(plot_ap_per_class(report.task), "AP per class"),
                (plot_pr_curve(report.task), "precision-recall curves, artifact and reference"),
                (plot_confusion(report.task), "confusion matrix"),
                (plot_disagreeing(report.task, pictures), "images where the artifact and the reference disagree most")]
    elif key == "layers":
        made = [(plot_layers(report.layer_errors or []), "per-layer INT8 error, local and cumulative")]
    elif key == "latency":
        made = [(plot_latency(report.latency), "latency histogram and CDF")]
    elif key == "comparison":
        made = [(plot_tradeoff([report, *siblings]), "latency vs accuracy")]
    elif key == "auto" and report.auto:
        png = frontier_png(report.auto)
        made = [(base64.b64encode(png).decode("ascii") if png else None, "precision candidates: latency vs accuracy")]
    else:
        made = []
    return [_img(b64, alt) for b64, alt in made if b64]


def frontier_png(auto: dict[str, Any]) -> bytes | None:
    """Latency (at the ranking batch) against accuracy, one point per built candidate: filled within budget, open
    outside it; the chosen one ringed."""
    rows = [r for r in auto["candidates"] if r.get("built")]
    if not rows:
        return None
    plt = _plt()
    batch = str(auto["batch"])
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for r in rows:
        x, y = r["latency_ms"][batch], r["accuracy"]
        ax.scatter([x], [y], s=60, facecolors="tab:blue" if r["passed"] else "none", edgecolors="tab:blue")
        if r["name"] == auto["chosen"]:
            ax.scatter([x], [y], s=220, facecolors="none", edgecolors="tab:green", linewidths=2)
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set_xlabel(f"latency at batch {batch} (median ms, this machine)")
    ax.set_ylabel(rows[0]["metric"])
    ax.set_title("precision candidates: filled = within budget, ringed = chosen", fontsize=10)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def layer_profile_html(report: Report, top: int = 10) -> str:
    """The `top` slowest layers of report.json's layer_profile (TensorRT's IProfiler), or nothing without one."""
    profile = report.layer_profile
    if profile is None or not profile.layers:
        return ""
    layers = profile.layers
    rows = [[lay.layer, f"{lay.median_ms:.4f}", f"{100 * lay.share:.1f} %"] for lay in layers[:top]]
    total = sum(lay.median_ms for lay in layers)
    return (f"<h2 id='layer-profile'>Slowest layers</h2><p>{html.escape(profile.profiler)}, batch "
            f"{profile.batch}, median of {profile.iterations} runs: the {len(rows)} slowest of {len(layers)} "
            f"layers (all layers: {total:.4f} ms)</p>"
            + _table(["layer", "median ms", "share"], rows))


def render_html(report: Report, siblings: list[Report] | None = None,
                pictures: Mapping[int, np.ndarray] | None = None) -> str:
    """The page; `pictures` are the validation images (uint8 HWC RGB, at the model input's size, by index) that
    the detection section draws boxes on."""
    siblings = siblings or []
    title, paras = header(report)
    ok, warned = report.passed, bool(report.warnings)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)} <span class='verdict {'vfail' if not ok else 'vwarn' if warned else 'vpass'}'>"
        f"{html.escape(verdict(report))}</span></h1>",
    ]
    parts += [f"<p class='warn'>⚠️ {_inline(w.message)}</p>" for w in report.warnings]
    parts += [f"<p>{_inline(p)}</p>" for p in paras]
    for s in sections(report, siblings):
        parts.append(f"<h{s.level} id='{s.key}'>{html.escape(s.title)}</h{s.level}>")
        for b in s.blocks:
            if isinstance(b, Table):
                parts.append(_table(b.header, b.rows, b.row_classes, css="checks" if s.key == "checks" else ""))
            else:
                parts.append(f"<p>{_inline(b)}</p>")
        parts += _plots(s.key, report, siblings, pictures or {})
    parts.append(layer_profile_html(report))
    parts.append(f"<p style='color:#888'>schema {html.escape(report.schema_)}, edgedeploy "
                 f"{html.escape(report.edgedeploy)}</p></body></html>")
    return "\n".join(parts)


def plot_cumulative(layers: list[dict]) -> str | None:
    """Cumulative error of every matched layer in graph order, quantized layers marked: where the error grows."""
    plt = _plt()
    if not layers:
        return None
    fig, ax = plt.subplots(figsize=(11, 3.4))
    xs = range(len(layers))
    ax.plot(xs, [max(r["rel_l2"], 1e-12) for r in layers], color="#546e7a", lw=1)
    marked = [(i, r) for i, r in enumerate(layers) if r["quantized"]]
    ax.scatter([i for i, _ in marked], [max(r["rel_l2"], 1e-12) for _, r in marked], s=12, color="#8e24aa",
               label="quantized layer", zorder=3)
    ax.set(yscale="log", title="Cumulative error along the graph (layer output, quantized vs float)",
           xlabel="layer (graph order)", ylabel="rel-L2")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def render_precision_debug(report: dict[str, Any], top: int = 30) -> str:
    """report.html of `edgedeploy debug precision`."""
    by_name = {r["layer"]: r for r in report["layers"]}
    title = f"edgedeploy debug precision: {report['name']} → {report['target']} int8"
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p>Quantized model <code>{html.escape(report['quantized_model'])}</code> vs <code>deploy.onnx</code>, "
             f"both on {html.escape(report['backend'])}, {report['samples']} samples. Local error: the layer alone "
             "on float activations; cumulative: its output in the quantized graph.</p>"]
    plot = plot_layers(report["layer_errors"])
    if plot:
        parts += ["<h2>Per-layer error (local)</h2>", _img(plot, "per-layer local error")]
    cumulative = plot_cumulative(report["layers"])
    if cumulative:
        parts.append(_img(cumulative, "cumulative error along the graph"))
    parts += [f"<h2>Worst {min(top, len(report['ranking']))} layers</h2>",
              _table(["#", "layer", "op", "local rel-L2", "cumulative rel-L2", "SNR dB"],
                     [[i + 1, n, by_name[n]["op_type"], by_name[n]["local_rel_l2"], by_name[n]["rel_l2"],
                       by_name[n]["snr_db"]] for i, n in enumerate(report["ranking"][:top])])]
    if "trials" in report:
        parts += ["<h2>Search: worst layers kept in float</h2>",
                  _table(["layers in float", "result", "mAP@0.5 drop", "top-1 drop", "failed checks", "cache", "s"],
                         [[len(t["kept_float"]), "pass" if t["passed"] else "fail",
                           (t["task"] or {}).get("map50_drop"), (t["task"] or {}).get("top1_drop"),
                           "; ".join(t["failed_checks"]) or "—", t["cache"], t["seconds"]] for t in report["trials"]],
                         ["pass" if t["passed"] else "fail" for t in report["trials"]], css="checks")]
        result = report["result"]
        parts.append(f"<pre>{html.escape(result['snippet'])}</pre>" if result["passed"] else
                     "<p class='warn'>The budget does not hold even with the searched layers kept in float.</p>")
    parts.append(f"<p style='color:#888'>schema {html.escape(report['schema'])}</p></body></html>")
    return "\n".join(parts)
