"""report.html: one self-contained page (plots embedded as base64 PNG, no scripts, no outside resources).

Plots (matplotlib, Agg backend; imported only here): latency histogram and CDF per batch size, error per output
(rel-L2 against its budget, and the absolute error at quantiles), and per-layer INT8 error when the report holds
``layer_errors`` (written by the INT8 localisation work).
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from edgedeploy.validate.metrics import ABS_ERROR_QUANTILES
from edgedeploy.validate.report import _fmt, _limit, _status

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child,td.text{text-align:left}
.pass{color:#176f2c}.fail{color:#b00020;font-weight:bold}.skip{color:#777}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff}
.vpass{background:#2e7d32}.vfail{background:#c62828}.warn{background:#fff4e5;border-left:4px solid #f0a000;padding:6px 10px}
.checks td:last-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
"""


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display on CI runners and devices
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def plot_latency(latency: list[dict]) -> str | None:
    import numpy as np

    plt = _plt()

    series = [t for t in latency if t.get("samples_ms")]
    if not series:
        return None
    fig, (ax_h, ax_c) = plt.subplots(1, 2, figsize=(11, 3.6))
    for t in series:
        ms = np.sort(np.asarray(t["samples_ms"]))
        label = f"batch {t['batch']} (median {t['median_ms']:.3g} ms)"
        ax_h.hist(ms, bins=min(50, max(10, ms.size // 4)), alpha=0.6, label=label)
        ax_c.plot(ms, np.arange(1, ms.size + 1) / ms.size, label=label)
        ax_c.axvline(t["p99_ms"], ls=":", lw=0.8, color=ax_c.lines[-1].get_color())
    ax_h.set(title="Latency histogram", xlabel="ms per call", ylabel="calls")
    ax_c.set(title="Latency CDF (dotted: p99)", xlabel="ms per call", ylabel="fraction of calls ≤ x", ylim=(0, 1.01))
    ax_h.legend(fontsize=8)
    ax_c.legend(fontsize=8, loc="lower right")
    ax_c.grid(alpha=0.3)
    return _png(fig)


def plot_errors(tensors: dict[str, dict], checks: list[dict]) -> str | None:
    import numpy as np

    plt = _plt()

    if not tensors:
        return None
    names = list(tensors)
    limits = {c["name"][: -len(".rel_l2")]: c["limit"] for c in checks
              if c["name"].endswith(".rel_l2") and c.get("group") == "tensor"}
    fig, (ax_b, ax_q) = plt.subplots(1, 2, figsize=(11, 3.6))
    vals = [max(tensors[n]["rel_l2"], 1e-12) for n in names]
    colors = ["#c62828" if n in limits and tensors[n]["rel_l2"] > limits[n] else "#1f77b4" for n in names]
    x = np.arange(len(names))
    ax_b.bar(x, vals, color=colors)
    for i, n in enumerate(names):
        if n in limits:
            ax_b.hlines(limits[n], i - 0.4, i + 0.4, colors="k", linestyles="--", label="budget" if i == 0 else None)
        if not tensors[n].get("finite", True):
            ax_b.annotate("NaN/Inf", (i, vals[i]), ha="center", va="bottom", color="#c62828")
    ax_b.set_xticks(x, names, rotation=30 if len(names) > 4 else 0)
    ax_b.set(yscale="log", title="rel-L2 per output (dashed: budget; floor 1e-12 = exact)", ylabel="rel-L2")
    qs = np.arange(len(ABS_ERROR_QUANTILES))
    for n in names:
        q = tensors[n].get("abs_error_quantiles")
        if q:
            ax_q.plot(qs, [max(v, 1e-12) for v in q], marker="o", label=n)
    ax_q.set(yscale="log", title="|error| at quantiles per output (floor 1e-12 = exact)", xlabel="quantile",
             ylabel="|artifact − reference|")
    ax_q.set_xticks(qs, ["p50", "p90", "p99", "p99.9", "max"][: len(qs)])
    ax_q.legend(fontsize=8)
    ax_q.grid(alpha=0.3)
    return _png(fig)


def plot_layers(layers: list[dict]) -> str | None:
    """Per-layer error (e.g. INT8 localisation): `[{"layer": name, "rel_l2": x}, ...]`, worst 30 shown."""
    plt = _plt()
    if not layers:
        return None
    rows = sorted(layers, key=lambda r: -r.get("rel_l2", 0.0))[:30]
    fig, ax = plt.subplots(figsize=(11, 0.28 * len(rows) + 1.2))
    ax.barh([r["layer"] for r in rows][::-1], [max(r.get("rel_l2", 0.0), 1e-12) for r in rows][::-1],
            color="#8e24aa")
    ax.set(xscale="log", title="Per-layer INT8 error: each layer alone on the float graph's activations "
                               "(worst first)", xlabel="rel-L2 vs the float layer")
    return _png(fig)


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None, css: str = "") -> str:
    out = [f"<table class='{css}'><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>")
    return "".join(out) + "</table>"


def render_html(report: dict[str, Any]) -> str:
    c = report["conditions"]
    ok = report["passed"]
    checks = report["checks"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>edgedeploy {html.escape(report.get('kind', 'build'))}: {html.escape(report['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>edgedeploy {html.escape(report.get('kind', 'build'))}: {html.escape(report['name'])} → "
        f"{html.escape(report['target'])} {html.escape(report['precision'])} "
        f"<span class='verdict {'vpass' if ok else 'vfail'}'>{'PASS' if ok else 'FAIL'}</span></h1>",
        f"<p>Artifact <code>{html.escape(report['artifact']['path'])}</code>; reference: "
        f"{html.escape(str(report['source'].get('reference', '—')))}; validated on "
        f"{html.escape(report['validation_data'])}.<br>Conditions: {html.escape(str(c.get('backend')))} "
        f"{html.escape(str(c.get('version')))} on {html.escape(str(c.get('device')))} "
        f"({html.escape(str(c.get('processor')))}), {html.escape(str(c.get('threads')))} threads"
        + (f", precision hint {html.escape(str(c.get('precision_hint_effective')))}"
           if "precision_hint_effective" in c else "") + ".</p>",
    ]
    parts += [f"<p class='warn'>{html.escape(w['message'] if isinstance(w, dict) else w)}</p>"
              for w in report.get("warnings", [])]
    parts += ["<h2>Checks</h2>",
              _table(["check", "value", "limit", "result", "detail"],
                     [[k["name"], k["value"], _limit(k), _status(k), k.get("message", "")] for k in checks],
                     [_status(k) for k in checks], css="checks")]
    parts += ["<h2>Outputs vs reference</h2>",
              _table(["output", "max abs", "mean abs", "rel-L2", "cosine", "SNR dB", "NaN", "Inf"],
                     [[n, m["max_abs"], m["mean_abs"], m["rel_l2"], m["cosine"], m["snr_db"], m.get("nan_count"),
                       m.get("inf_count")] for n, m in report["tensors"].items()])]
    err = plot_errors(report["tensors"], checks)
    if err:
        parts.append(_img(err, "error per output"))
    task = report.get("task")
    if task:
        keys = [k for k in ("map50", "map50_95", "reference_map50", "reference_map50_95", "map50_drop",
                            "map50_95_drop", "map50_vs_reference", "top1_agreement", "top5_agreement", "top1",
                            "top5", "reference_top1", "reference_top5", "top1_drop") if k in task]
        parts += [f"<h2>Task: {html.escape(task.get('kind', ''))} (output {html.escape(str(task.get('output')))})</h2>",
                  _table(["metric", "value"], [[k, task[k]] for k in keys])]
    parts += ["<h2>Latency</h2>",
              _table(["batch", "median ms", "p90 ms", "p99 ms", "min ms", "max ms", "mean ms", "CoV", "n",
                      "backend's own median ms", "samples/s (sync)", "samples/s (async)", "load/core", "others' CPU"],
                     [[t["batch"], t["median_ms"], t["p90_ms"], t["p99_ms"], t["min_ms"], t.get("max_ms"),
                       t["mean_ms"], f"{t['cov']:.1%}" + (" unstable" if t["unstable"] else ""), t.get("iterations"),
                       (t.get("backend_timing") or {}).get("median_ms", "—"),
                       t["throughput_per_s"],
                       (t.get("async") or {}).get("throughput_per_s", "= sync"), t.get("load_per_core"),
                       t.get("other_cpu_busy")] for t in report["latency"]])]
    lat = plot_latency(report["latency"])
    if lat:
        parts.append(_img(lat, "latency histogram and CDF"))
    if report.get("auto"):
        from edgedeploy.auto import frontier_html

        parts.append(frontier_html(report["auto"]))
    layers = report.get("layer_errors")
    if layers:
        parts += ["<h2>Per-layer error</h2>", _img(plot_layers(layers), "per-layer error")]
    if report.get("baseline"):
        b = report["baseline"]
        parts.append(f"<p>Baseline <code>{html.escape(str(b.get('path')))}</code>, timed on "
                     f"{html.escape(str(b.get('processor')))}.</p>")
    parts.append(f"<p style='color:#888'>schema {html.escape(report['schema'])}, edgedeploy "
                 f"{html.escape(str(report.get('edgedeploy')))}</p></body></html>")
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
