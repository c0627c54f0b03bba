"""report.md: the report for people (and for a CI step summary), rendered from the typed Report
(edgedeploy.validate.record) that report.json is written from.

The page is a list of sections (`sections`), each a heading with paragraphs and tables; report.md and report.html
(edgedeploy.validate.html) render the same list, so the HTML page has every section the Markdown has, plus plots.
Works for both report kinds (``build`` and ``validate``, see docs/report-schema.md); sections whose data a report
does not hold are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgedeploy import device
from edgedeploy.numbers import num
from edgedeploy.tasks import TASKS, task_of
from edgedeploy.validate.record import Check, Report

# --------------------------------------------------------------------------------------------- the page model


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]
    row_classes: list[str] | None = None  # html: pass / fail / skip per row


@dataclass
class Section:
    key: str  # stable id (html anchors and plots hang off it)
    title: str
    blocks: list[str | Table] = field(default_factory=list)  # a str is a paragraph: Markdown inline (`code`, **bold**)
    level: int = 2


def _pct(v: float | None, digits: int = 0) -> str:
    return "unknown" if v is None else f"{v:.{digits}%}"


_RESULT = {"pass": "pass", "fail": "**FAIL**", "skip": "skipped"}
_METRIC_LABEL = {"finite": "NaN + Inf values", "rel_l2": "relative L2 error", "max_abs": "max |error|",
                 "cosine": "cosine similarity", "snr_db": "SNR (dB)", "files_unchanged": "files changed since the build",
                 **{k: v for t in TASKS.values() for k, v in t.labels.items()}}


def check_label(name: str) -> str:
    """What a check measures, in words (`pred.rel_l2` → relative L2 error of pred)."""
    parts = name.split(".")
    if parts[0] == "warning":
        return f"warning {'.'.join(parts[1:])} (--strict)"
    if parts[0] == "baseline":
        if len(parts) == 4 and parts[1] == "latency":
            return f"median latency at batch {parts[2].removeprefix('batch')} vs the baseline (ms)"
        inner = check_label(".".join(parts[1:]))
        return f"{inner} vs the baseline"
    if parts[0] == "artifact":
        return "artifact " + _METRIC_LABEL.get(parts[-1], parts[-1])
    if len(parts) >= 2 and parts[-1] in _METRIC_LABEL:
        return f"{_METRIC_LABEL[parts[-1]]} of {'.'.join(parts[:-1])}"
    return _METRIC_LABEL.get(name, name)


def _limit(c: Check) -> str:
    return "—" if c.limit is None else f"{c.op or ''} {num(c.limit)}".strip()


def verdict(report: Report) -> str:
    text = "PASS" if report.passed else "FAIL"
    n = len(report.warnings)
    return text + (f" with {n} warning{'s' * (n > 1)}" if n else "")


# --------------------------------------------------------------------------------------------- header


def header(report: Report) -> tuple[str, list[str]]:
    """The title and the paragraphs above every section: what was checked where, the baseline, what failed."""
    c = report.conditions
    title = f"edgedeploy {report.kind}: {report.name} → {report.target} {report.precision}"
    hint = ""
    if "precision_hint_effective" in c:
        hint = (f", precision hint requested {c.get('precision_hint_requested')}, effective "
                f"{c['precision_hint_effective']}")
    paras = [f"Artifact `{report.artifact['path']}`; reference: {report.source.get('reference', '—')}; "
             f"validated on {report.validation_data}.",
             f"Conditions: {c.get('backend')} {c.get('version')} on {c.get('device')} ({c.get('processor')}), "
             f"{c.get('threads')} threads{hint}."]
    b1 = report.artifact.get("batch1")
    if isinstance(b1, dict) and b1.get("latency"):
        dynamic = (b1.get("dynamic_latency") or [{}])[0].get("median_ms")
        paras.append(f"Batch-1 copy `{b1['path']}` (static shape, to deploy when running one image at a time): "
                     f"{b1['latency'][0]['median_ms']:.3g} ms at batch 1"
                     + (f" vs {dynamic:.3g} ms for the dynamic-batch artifact, timed alternately" if dynamic else "")
                     + f"; `{report.artifact['path']}` for any batch. Both compute the same (rel-L2 "
                       f"{b1['max_rel_l2_vs_dynamic']:.2g} on {b1['samples_compared']} samples).")
    if report.baseline:
        b = report.baseline
        paras.append(f"Baseline: `{b['path']}` (edgedeploy {b.get('edgedeploy')}, timed on {b.get('processor')}).")
    failed = [k for k in report.checks if k.outcome == "fail"]
    if failed:
        paras.append("**Failed:** " + "; ".join(k.message or k.name for k in failed) + ".")
    if report.strict:
        paras.append("Strict mode (`--strict`): every warning is also a failing check.")
    return title, paras


# --------------------------------------------------------------------------------------------- sections


def sections(report: Report, siblings: list[Report] | None = None) -> list[Section]:
    """Every section of the report, in page order; `siblings` are reports of other precisions/targets of the same
    model built side by side (the comparison section)."""
    out = [_checks(report), _outputs(report)]
    out += _task(report)
    out += _layers(report)
    out += _auto(report.auto)
    out += _precision(report.precision_stage)
    out += _latency(report)
    out += _comparison(report, siblings or [])
    out += _graph(report)
    out += _stages(report)
    out += _device(report.device.model_dump(exclude_unset=True) if report.device is not None else None)
    return out


def _checks(report: Report) -> Section:
    checks = report.checks
    counts = {k: sum(c.outcome == k for c in checks) for k in ("pass", "fail", "skip")}
    rows = [[f"`{c.name}`", check_label(c.name), num(c.value), _limit(c), c.origin or "—",
             _RESULT[c.outcome] + (f" ({(c.message or '').split(' skipped: ', 1)[-1]})" if c.outcome == "skip" else "")]
            for c in checks]
    return Section("checks", f"Checks ({counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped)",
                   [Table(["check", "what", "value", "limit", "from", "result"], rows, [c.outcome for c in checks]),
                    "`from`: where the limit came from — `default` (the precision's built-in budget), `config` "
                    "(`thresholds:` in the build spec or `--config`), `baseline` (`--baseline`), `always` (no "
                    "NaN/Inf, unchanged files), `strict` (a warning under `--strict`)."])


def _outputs(report: Report) -> Section:
    rows = [[name, num(m.max_abs), num(m.mean_abs), num(m.rel_l2), num(m.cosine), num(m.snr_db),
             f"{num(m.nan_count)} / {num(m.inf_count)}"] for name, m in report.tensors.items()]
    return Section("outputs", "Outputs vs reference",
                   [Table(["output", "max abs error", "mean abs error", "relative L2 error", "cosine similarity",
                           "SNR (dB)", "NaN / Inf"], rows)])


def _task(report: Report) -> list[Section]:
    """The task's own section (edgedeploy.tasks: each task declares it)."""
    kind = task_of(report.task)
    if kind is None:
        return []
    made = kind.section(report.task, f"{report.target} {report.precision}")
    return [Section("task", made.title, [b if isinstance(b, str) else Table(*b) for b in made.blocks])]


def _layers(report: Report) -> list[Section]:
    layers = report.layer_errors
    if not layers:
        return []
    worst = layers[:5]
    return [Section("layers", f"Per-layer INT8 error (worst {len(worst)} of {len(layers)} quantized layers)", [
        Table(["layer", "op", "alone on float inputs (relative L2)", "in the quantized graph (relative L2)"],
              [[f"`{r['layer']}`", r.get("op_type"), num(r["rel_l2"]), num(r.get("cumulative_rel_l2"))]
               for r in worst]),
        "`edgedeploy debug precision` ranks every layer and finds the fewest to keep in float."])]


def _precision(p: dict[str, Any] | None) -> list[Section]:
    """How the precision stage made the artifact: method, settings, calibration set and cache (reused or rebuilt)."""
    if not p:
        return []
    blocks: list[str | Table] = [f"Method: {p.get('method')}."]
    if p.get("settings"):
        blocks.append("Settings: " + ", ".join(f"{k} {v}" for k, v in p["settings"].items()) + ".")
    q = p.get("structure")
    if q:
        blocks.append(f"Q/DQ graph: {q.get('compute_ops_int8')}/{q.get('compute_ops')} Conv/MatMul/Gemm fed by DQ on "
                      f"data and weights; zero points {', '.join(q.get('zero_point_dtypes', []))}, all 0: "
                      f"{num(q.get('all_zero_points_zero'))}; per-channel weights {q.get('per_channel_weights')}; "
                      f"TensorRT-ready {num(q.get('tensorrt_ready'))}.")
    k = p.get("ort_kernels")
    if k:
        blocks.append(f"In ONNX Runtime's optimized graph: {k.get('compute_int8')} convolutions / matrix products run "
                      f"as int8 kernels, {k.get('compute_float')} in float (" + ", ".join(
                          f"{op} {n}" for op, n in (k.get("int8_kernels") or {}).items()) + ").")
    if p.get("fake_quantize") is not None:
        blocks.append(f"OpenVINO IR: {p['fake_quantize']} FakeQuantize ops.")
    if p.get("vs_fp32_graph"):
        blocks.append(Table(["output", "max abs error vs the fp32 graph", "relative L2 error", "cosine similarity"],
                            [[k, num(m["max_abs"]), num(m["rel_l2"]), num(m["cosine"])]
                             for k, m in p["vs_fp32_graph"].items()]))
    out = [Section("precision", "Precision", blocks)]
    c = p.get("calibration")
    if c:
        cache = p.get("cache", {})
        rows = [["source", f"`{c.get('source')}` ({c.get('format')})"],
                ["samples used", f"{c.get('size')} of {c.get('candidates')} (seed {c.get('seed')})"],
                ["data sha256", f"`{str(c.get('sha256', ''))[:16]}`"],
                ["read (s)", num(c.get("read_seconds"))], ["quantize (s)", num(p.get("quantize_seconds"))],
                ["cache", f"{cache.get('status')} (key `{str(cache.get('key', ''))[:16]}`): {cache.get('note', '')}"]]
        out.append(Section("calibration", "Calibration", [Table(["item", "value"], rows)], level=3))
    return out


def _ratio_cell(c: dict[str, Any]) -> str:
    if "ratio_ci95" not in c:
        return "—"
    low, high = c["ratio_ci95"]
    return f"{c['ratio']:.2f}x ({low:.2f}-{high:.2f})"


def _async(a: dict | None) -> str:
    if not a:
        return "—"
    if a.get("mode") != "async":
        return "= sync"
    return f"{num(a['throughput_per_s'])} ({a.get('requests')} req" + (
        f", {a['streams']} streams)" if a.get("streams") else ")")


def _latency(report: Report) -> list[Section]:
    lat = report.latency
    if not lat:
        return []
    rows = [[t.batch, num(t.median_ms), num(t.p90_ms), num(t.p99_ms), f"{num(t.min_ms)}–{num(t.max_ms)}",
             _pct(t.cov, 1) + (" unstable" if t.unstable else ""), num(t.throughput_per_s), _async(t.async_)]
            for t in lat]
    t = lat[0]
    calls = ", ".join(f"batch {x.batch}: {x.iterations} calls" for x in lat)
    text = (f"Synchronous calls, the Python call and output copy included ({calls}, after "
            f"{'?' if t.warmup is None else t.warmup} warm-up calls). Load per core before timing "
            f"{_pct(t.load_per_core)}; other processes' CPU use while timing {_pct(t.other_cpu_busy)}."
            + "".join(f" Batch {x.batch} timed by {x.backend_timing['source']}: median "
                      f"{num(x.backend_timing['median_ms'])} ms." for x in lat if x.backend_timing))
    m = report.latency_measurement or {}
    if m.get("process") == "fresh":
        text += (f" Timed in a fresh process after the build released its memory and threads ({num(m.get('seconds'))} s, "
                 f"peak RSS {num(m.get('peak_rss_mb'))} MiB).")
    blocks: list[str | Table] = [
        Table(["batch", "median (ms)", "p90 (ms)", "p99 (ms)", "min–max (ms)", "CoV", "samples/s",
               "async samples/s"], rows), text]
    if m.get("int8_vs_float"):
        blocks += [Table(["batch", "int8 median (ms)", "float median (ms)", "int8 speed-up", "int8/float (95% CI)",
                          "verdict"],
                         [[c["batch"], num(c["int8_median_ms"]), num(c["float_median_ms"]), f"{c['speedup']:.2f}x",
                           _ratio_cell(c), c.get("verdict", "slower" if c.get("slower") else "—")]
                          for c in m["int8_vs_float"]]),
                   "The int8 artifact against the float graph on the same backend, timed in alternating windows of "
                   "one process (outside load hits both alike); the interval is over the rounds' ratios, and a "
                   "verdict of `within noise` means the timing cannot tell them apart."]
    return [Section("latency", "Latency", blocks)]


def accuracy_of(r: Report) -> tuple[str, float | None]:
    """(label, value) of a report's headline task metric (its task's summary_metrics), ("", None) without one."""
    kind = task_of(r.task)
    found = kind.summary(r.task) if kind is not None and r.task is not None else None
    return (kind.labels[found[0]], found[1]) if found else ("", None)


def first_latency(r: Report) -> tuple[float | None, int | None]:
    """(median ms, batch) at the smallest batch timed, (None, None) when untimed."""
    if not r.latency:
        return None, None
    t = min(r.latency, key=lambda t: t.batch)
    return t.median_ms, t.batch


def worst_rel_l2(r: Report) -> float | None:
    return max((m.rel_l2 for m in r.tensors.values()), default=None)


def _comparison(report: Report, siblings: list[Report]) -> list[Section]:
    if not siblings:
        return []
    rows = []
    for r in sorted([report, *siblings], key=lambda r: (r.target, r.precision)):
        label, value = accuracy_of(r)
        median, batch = first_latency(r)
        rows.append([f"{r.target} {r.precision}" + (" (this report)" if r is report else ""),
                     f"{num(median)} (batch {batch})", f"{num(value)} {label}".strip(), num(worst_rel_l2(r)),
                     verdict(r)])
    return [Section("comparison", f"Side by side: {report.name} at every precision built beside it", [
        Table(["artifact", "median latency (ms)", "accuracy", "worst relative L2", "verdict"], rows),
        "Other build folders of the same model in the same parent folder; each figure is from its own build on "
        "its own machine state: compare latency only within one machine."])]


def _graph(report: Report) -> list[Section]:
    if report.optimize is None:
        return []
    rows = [[p.get("name"), p.get("status"), f"{p.get('nodes_before')} → {p.get('nodes_after')}",
             num(p.get("max_rel_l2"))] for p in report.optimize["passes"]]
    return [Section("graph", "Graph passes", [
        Table(["pass", "status", "nodes before → after", "max relative L2 change"], rows),
        "Deploy graph ops: " + ", ".join(f"{op} {n}" for op, n in report.optimize["deploy_ops"].items()) + "."])]


def _stages(report: Report) -> list[Section]:
    if report.stage_seconds is None:
        return []
    rss, reuse = report.stage_peak_rss_mb or {}, report.stage_cache or {}
    rows = [[k, num(v), num(rss.get(k)), _reuse(reuse.get(k))] for k, v in report.stage_seconds.items()]
    rows.append(["total", num(report.wall_seconds), num(report.peak_rss_mb), ""])
    blocks: list[str | Table] = [Table(["stage", "wall time (s)", "peak RSS (MiB)", "stage cache"], rows)]
    if report.peak_rss_mb is not None:
        blocks.append(f"Peak resident memory (RSS): {report.peak_rss_mb:.0f} MiB.")
    return [Section("stages", "Stages", blocks)]


def _reuse(entry: dict | None) -> str:
    """A stage's stage-cache status: reused, or why not."""
    if not entry:
        return "—"
    return "reused" if entry.get("status") == "reused" else f"{entry.get('status')}: {entry.get('note', '')}"


def frontier_table(auto: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The candidates as a table (header, rows) for the Precision auto section of report.md / report.html."""
    batches = [str(b) for b in auto["batches"]]
    header = ["candidate", *[f"batch {b} ms" for b in batches], f"vs chosen at batch {auto['batch']} (95% CI)",
              "accuracy", "budget", "judged on", "why"]
    rows = []
    for r in auto["candidates"]:
        if not r.get("built"):
            rows.append([r["name"], *["—"] * len(batches), "—", "—", "—", "—", r["why"]])
            continue
        name = r["name"] + (f" ({len(r['kept_float'])} in float)" if r.get("kept_float") else "")
        vs = r.get("vs_chosen")
        versus = ("chosen" if vs is None else
                  f"{vs['ratio']:.2f}x ({vs['ci95'][0]:.2f}-{vs['ci95'][1]:.2f}) {vs['verdict']}")
        rows.append([name, *[f"{r['latency_ms'][b]:.3g}" for b in batches], versus,
                     f"{r['metric']} {r['accuracy']:.4g}", f"{r.get('budget', r['precision'])}: "
                     + ("pass" if r["passed"] else "fail"), "; ".join(r.get("judged_on", [])) or "—", r["why"]])
    return header, rows


def _auto(auto: dict[str, Any] | None) -> list[Section]:
    """`--precision auto`: every candidate, its latency and accuracy, and why it won or lost (edgedeploy.auto)."""
    if not auto:
        return []
    head, rows = frontier_table(auto)
    return [Section("auto", "Precision auto", [
        f"Chosen: **{auto['chosen']}** (candidates timed side by side in one fresh process; ranked at batch "
        f"{auto['batch']}).", Table(head, rows), f"The latency/accuracy plot is also `{auto['plot']}` in this folder."])]


def _device(conditions: dict[str, Any] | None) -> list[Section]:
    """Where the figures were measured: device model, power mode, clocks, temperatures, load (edgedeploy.device)."""
    if not conditions:
        return []
    return [Section("device", "Device", [Table(["condition", "value"], [list(r) for r in device.rows(conditions)])])]


def sibling_reports(report: Report, folder: Path) -> list[Report]:
    """Build reports of the same model at other targets/precisions in folders beside `folder` (at most 12; a file
    that is not a report of this version is passed over)."""
    found: dict[tuple[str, str], Report] = {}
    try:
        candidates = sorted(Path(folder).parent.glob("*/report.json"))[:200]
    except OSError:
        return []
    for path in candidates:
        if path.parent.name.startswith("."):
            continue
        try:
            other = Report.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            continue
        key = (other.target, other.precision)
        if other.kind != "build" or other.name != report.name or key == (report.target, report.precision):
            continue
        found.setdefault(key, other)
    return list(found.values())[:12]


# --------------------------------------------------------------------------------------------- Markdown


def _md_table(t: Table) -> list[str]:
    lines = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in t.rows]
    return lines + [""]


def render_markdown(report: Report, siblings: list[Report] | None = None) -> str:
    title, paras = header(report)
    lines = [f"# {title} — {verdict(report)}", ""]
    for w in report.warnings:
        lines += [f"> ⚠️ {w.message}", ""]
    for p in paras:
        lines += [p, ""]
    for s in sections(report, siblings):
        lines += ["#" * s.level + " " + s.title, ""]
        for b in s.blocks:
            lines += _md_table(b) if isinstance(b, Table) else [b, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return _md_table(Table(header, [[num(v) for v in row] for row in rows]))


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
        budget = ", ".join(f"{k} {num(v)}" for k, v in report["budget"].items())
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

