"""report.md: the report for people (and for a CI step summary), rendered from report.json's dictionary.

Works for both report kinds (``build`` and ``validate``, see docs/report-schema.md); sections whose data a report
does not hold are left out.
"""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4f}"
    return "—" if value is None else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines + [""]


_RESULT = {"pass": "pass", "fail": "**FAIL**", "skip": "skipped"}


def _status(c: dict) -> str:
    return c.get("status") or ("pass" if c["passed"] else "fail")


def _limit(c: dict) -> str:
    return "—" if c.get("limit") is None else f"{c.get('op') or ''} {_fmt(c['limit'])}".strip()


def render_markdown(report: dict[str, Any]) -> str:
    verdict = "PASS" if report["passed"] else "FAIL"
    c = report["conditions"]
    kind = report.get("kind", "build")
    checks = report["checks"]
    failed = [k for k in checks if _status(k) == "fail"]
    lines = [
        f"# edgedeploy {kind}: {report['name']} → {report['target']} {report['precision']} — {verdict}",
        "",
        f"Artifact `{report['artifact']['path']}`; reference: {report['source'].get('reference', '—')}; "
        f"validated on {report['validation_data']}.",
        "",
        f"Conditions: {c.get('backend')} {c.get('version')} on {c.get('device')} ({c.get('processor')}), "
        f"{c.get('threads')} threads"
        + (f", precision hint requested {c['precision_hint_requested']}, effective {c['precision_hint_effective']}"
           if "precision_hint_effective" in c else "")
        + ".",
        "",
    ]
    if report.get("baseline"):
        b = report["baseline"]
        lines += [f"Baseline: `{b['path']}` (edgedeploy {b.get('edgedeploy')}, timed on {b.get('processor')}).", ""]
    if failed:
        lines += ["**Failed:** " + "; ".join(k.get("message") or k["name"] for k in failed) + ".", ""]
    for w in report.get("warnings", []):
        lines += [f"> ⚠️ {w['message'] if isinstance(w, dict) else w}", ""]
    lines += [
        f"## Checks ({sum(_status(k) == 'pass' for k in checks)} passed, {len(failed)} failed, "
        f"{sum(_status(k) == 'skip' for k in checks)} skipped)",
        "",
        *_table(["check", "value", "limit", "result"],
                [[k["name"], k["value"], _limit(k), _RESULT[_status(k)]
                  + (f" ({k['message'].split(' skipped: ', 1)[-1]})" if _status(k) == "skip" else "")]
                 for k in checks]),
        "## Outputs vs reference",
        "",
        *_table(["output", "max abs", "mean abs", "rel-L2", "cosine", "SNR dB", "NaN", "Inf"],
                [[name, m["max_abs"], m["mean_abs"], m["rel_l2"], m["cosine"], m["snr_db"],
                  m.get("nan_count", "—"), m.get("inf_count", "—")]
                 for name, m in report["tensors"].items()]),
    ]
    task = report.get("task")
    if task and task.get("kind") == "detection":
        lines += ["## Detection", ""]
        if "map50" in task:
            lines += _table(["model", "mAP@0.5", "mAP@0.5:0.95"],
                            [["reference", task["reference_map50"], task["reference_map50_95"]],
                             [report["target"] + " " + report["precision"], task["map50"], task["map50_95"]]])
            lines += [f"mAP@0.5 drop vs reference: {_fmt(task['map50_drop'])}; mAP@0.5 against the reference's own "
                      f"detections: {_fmt(task['map50_vs_reference'])}.", ""]
        else:
            lines += [f"No labels: mAP@0.5 against the reference's own detections {_fmt(task['map50_vs_reference'])}.",
                      ""]
    elif task and task.get("kind") == "classification":
        rows = [["top-1 agreement with the reference", task["top1_agreement"]],
                ["top-5 agreement (reference top-1 in artifact top-5)", task["top5_agreement"]]]
        if "top1" in task:
            rows += [["top-1 accuracy: reference / artifact", f"{_fmt(task['reference_top1'])} / {_fmt(task['top1'])}"],
                     ["top-5 accuracy: reference / artifact", f"{_fmt(task['reference_top5'])} / {_fmt(task['top5'])}"],
                     ["top-1 drop", task["top1_drop"]]]
        lines += ["## Classification", "", *_table(["metric", "value"], rows)]
    if report.get("layer_errors"):
        worst = report["layer_errors"][:5]
        lines += [f"## Per-layer INT8 error (worst {len(worst)} of {len(report['layer_errors'])} quantized layers)", "",
                  *_table(["layer", "op", "alone on float inputs (rel-L2)", "in the quantized graph (rel-L2)"],
                          [[f"`{r['layer']}`", r.get("op_type"), r["rel_l2"], r.get("cumulative_rel_l2")]
                           for r in worst]),
                  "`edgedeploy debug precision` ranks every layer and finds the fewest to keep in float.", ""]
    if report.get("auto"):
        from edgedeploy.auto import frontier_markdown

        lines += frontier_markdown(report["auto"])
    if report.get("precision_stage"):
        lines += _precision_section(report["precision_stage"])
    lat = report["latency"]
    lines += [
        "## Latency",
        "",
        *_table(["batch", "median ms", "p90 ms", "p99 ms", "min ms", "max ms", "mean ms", "CoV", "n", "samples/s",
                 "async samples/s"],
                [[t["batch"], t["median_ms"], t["p90_ms"], t["p99_ms"], t["min_ms"], t.get("max_ms"), t["mean_ms"],
                  f"{t['cov']:.1%}" + (" (unstable)" if t["unstable"] else ""), t.get("iterations"),
                  t["throughput_per_s"], _async(t.get("async"))]
                 for t in lat]),
    ]
    if lat:
        t = lat[0]
        lines += [f"Load per core before timing {_pct(t.get('load_per_core'))}; other processes' CPU use while timing "
                  f"{_pct(t.get('other_cpu_busy'))}. Sync latency includes the Python call and output copy."
                  + "".join(f" Batch {x['batch']} by {x['backend_timing']['source']}: median "
                            f"{_fmt(x['backend_timing']['median_ms'])} ms." for x in lat if x.get("backend_timing")),
                  ""]
    if "optimize" in report:
        lines += [
            "## Graph",
            "",
            *_table(["pass", "status", "nodes before", "nodes after", "max rel-L2"],
                    [[p.get("name"), p.get("status"), p.get("nodes_before"), p.get("nodes_after"), p.get("max_rel_l2")]
                     for p in report["optimize"]["passes"]]),
            "Deploy graph ops: " + ", ".join(f"{op} {n}" for op, n in report["optimize"]["deploy_ops"].items()) + ".",
            "",
        ]
    if "stage_seconds" in report:
        rss, reuse = report.get("stage_peak_rss_mb", {}), report.get("stage_cache", {})
        lines += ["## Stages", "",
                  *_table(["stage", "seconds", "peak RSS MiB", "stage cache"],
                          [[k, v, rss.get(k), _reuse(reuse.get(k))] for k, v in report["stage_seconds"].items()]
                          + [["total", report["wall_seconds"], report.get("peak_rss_mb"), ""]])]
    if "peak_rss_mb" in report and "stage_seconds" not in report:
        lines += [f"Peak RSS {report['peak_rss_mb']:.0f} MiB.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _precision_section(p: dict[str, Any]) -> list[str]:
    """How the precision stage made the artifact: method, settings, calibration set and cache (reused or rebuilt)."""
    lines = ["## Precision", "", f"Method: {p.get('method')}."]
    if p.get("settings"):
        lines.append("Settings: " + ", ".join(f"{k} {v}" for k, v in p["settings"].items()) + ".")
    lines.append("")
    c = p.get("calibration")
    if c:
        cache = p.get("cache", {})
        lines += ["### Calibration", "",
                  *_table(["source", "format", "samples", "of", "seed", "sha256", "read s", "quantize s", "cache"],
                          [[c.get("source"), c.get("format"), c.get("size"), c.get("candidates"), c.get("seed"),
                            str(c.get("sha256", ""))[:16], c.get("read_seconds"), p.get("quantize_seconds"),
                            f"{cache.get('status')} ({str(cache.get('key', ''))[:16]})"]]),
                  f"Cache: {cache.get('note', '')}.", ""]
    q = p.get("structure")
    if q:
        lines += [f"Q/DQ graph: {q.get('compute_ops_int8')}/{q.get('compute_ops')} Conv/MatMul/Gemm fed by DQ on data "
                  f"and weights; zero points {', '.join(q.get('zero_point_dtypes', []))}, all 0: "
                  f"{_fmt(q.get('all_zero_points_zero'))}; per-channel weights {q.get('per_channel_weights')}; "
                  f"TensorRT-ready {_fmt(q.get('tensorrt_ready'))}.", ""]
    if p.get("fake_quantize") is not None:
        lines += [f"OpenVINO IR: {p['fake_quantize']} FakeQuantize ops.", ""]
    if p.get("vs_fp32_graph"):
        lines += _table(["output", "max abs vs fp32 graph", "rel-L2", "cosine"],
                        [[k, m["max_abs"], m["rel_l2"], m["cosine"]] for k, m in p["vs_fp32_graph"].items()])
    return lines


def _reuse(entry: dict | None) -> str:
    """A stage's stage-cache status for the Stages table: reused, or why not."""
    if not entry:
        return ""
    return "reused" if entry.get("status") == "reused" else f"{entry.get('status')}: {entry.get('note', '')}"


def _async(a: dict | None) -> str:
    if not a:
        return "—"
    if a.get("mode") != "async":
        return "= sync"
    return f"{a['throughput_per_s']:.1f} ({a.get('requests')} req" + (
        f", {a['streams']} streams)" if a.get("streams") else ")")


def _pct(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.0%}"


def render_precision_debug_markdown(report: dict[str, Any], top: int = 15) -> str:
    """report.md of `edgedeploy debug precision`: the worst layers, the search trials, the scope found."""
    lines = [f"# edgedeploy debug precision: {report['name']} → {report['target']} int8", "",
             f"Quantized model `{report['quantized_model']}` vs `deploy.onnx`, both on {report['backend']}, "
             f"{report['samples']} samples. Local error: the layer alone on float activations; cumulative: its "
             "output in the quantized graph.", "",
             f"## Worst {min(top, len(report['ranking']))} of {len(report['ranking'])} quantized layers", ""]
    by_name = {lay["layer"]: lay for lay in report["layers"]}
    lines += _table(["#", "layer", "op", "local rel-L2", "cumulative rel-L2", "SNR dB"],
                    [[i + 1, f"`{name}`", by_name[name]["op_type"], by_name[name]["local_rel_l2"],
                      by_name[name]["rel_l2"], by_name[name]["snr_db"]]
                     for i, name in enumerate(report["ranking"][:top])])
    if "trials" in report:
        budget = ", ".join(f"{k} {_fmt(v)}" for k, v in report["budget"].items())
        lines += ["## Search: worst layers kept in float", "", f"Budget (int8): {budget or 'none set'}.", ""]
        lines += _table(["layers in float", "result", "mAP@0.5 drop", "top-1 drop", "failed checks", "cache", "s"],
                        [[len(t["kept_float"]), "pass" if t["passed"] else "**fail**",
                          (t["task"] or {}).get("map50_drop"), (t["task"] or {}).get("top1_drop"),
                          "; ".join(t["failed_checks"]) or "—", t["cache"], t["seconds"]] for t in report["trials"]])
        result = report["result"]
        if result["passed"]:
            lines += [f"**Found:** {len(result['kept_float'])} layer(s) in float meet the budget. Add to the build "
                      "config (also in keep-float.yaml):", "", "```yaml", result["snippet"].rstrip(), "```", ""]
        else:
            lines += ["**Not found:** the budget does not hold even with the worst layers searched kept in float "
                      "(raise --max-layers, or look at calibration data and preprocessing).", ""]
    return "\n".join(lines)

