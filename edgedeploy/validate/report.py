"""report.md: the report for people (and for a CI step summary), rendered from report.json's dictionary."""

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


def render_markdown(report: dict[str, Any]) -> str:
    verdict = "PASS" if report["passed"] else "FAIL"
    c = report["conditions"]
    lines = [
        f"# edgedeploy: {report['name']} → {report['target']} {report['precision']} — {verdict}",
        "",
        f"Artifact `{report['artifact']['path']}`; reference: {report['source']['reference']}; "
        f"validated on {report['validation_data']}.",
        "",
        f"Conditions: {c.get('backend')} {c.get('version')} on {c.get('device')} ({c.get('processor')}), "
        f"{c.get('threads')} threads"
        + (f", precision hint requested {c['precision_hint_requested']}, effective {c['precision_hint_effective']}"
           if "precision_hint_effective" in c else "")
        + ".",
        "",
        "## Checks",
        "",
        *_table(["check", "value", "limit", "result"],
                [[k["name"], k["value"], k["limit"], "pass" if k["passed"] else "**FAIL**"] for k in report["checks"]]),
        "## Outputs vs reference",
        "",
        *_table(["output", "max abs", "mean abs", "rel-L2", "cosine", "SNR dB", "finite"],
                [[name, m["max_abs"], m["mean_abs"], m["rel_l2"], m["cosine"], m["snr_db"], m["finite"]]
                 for name, m in report["tensors"].items()]),
    ]
    task = report.get("task")
    if task:
        lines += [
            "## Detection",
            "",
            *_table(["model", "mAP@0.5", "mAP@0.5:0.95"],
                    [["reference", task["reference_map50"], task["reference_map50_95"]],
                     [report["target"] + " " + report["precision"], task["map50"], task["map50_95"]]]),
            f"mAP@0.5 drop vs reference: {_fmt(task['map50_drop'])}; mAP@0.5 against the reference's own detections: "
            f"{_fmt(task['map50_vs_reference'])}.",
            "",
        ]
    lines += [
        "## Latency",
        "",
        *_table(["batch", "median ms", "p90 ms", "p99 ms", "min ms", "mean ms", "CoV", "samples/s"],
                [[t["batch"], t["median_ms"], t["p90_ms"], t["p99_ms"], t["min_ms"], t["mean_ms"],
                  t["cov"] if not t["unstable"] else f"{t['cov']:.2f} (unstable)", t["throughput_per_s"]]
                 for t in report["latency"]]),
        "## Graph",
        "",
        *_table(["pass", "status", "nodes before", "nodes after", "max rel-L2"],
                [[p.get("name"), p.get("status"), p.get("nodes_before"), p.get("nodes_after"), p.get("max_rel_l2")]
                 for p in report["optimize"]["passes"]]),
        "Deploy graph ops: " + ", ".join(f"{op} {n}" for op, n in report["optimize"]["deploy_ops"].items()) + ".",
        "",
        "## Stages",
        "",
        *_table(["stage", "seconds"], [[k, v] for k, v in report["stage_seconds"].items()]
                + [["total", report["wall_seconds"]]]),
        f"Peak RSS {report['peak_rss_mb']:.0f} MiB.",
        "",
    ]
    return "\n".join(lines)
