"""Latency statistics for TensorRT timings (CUDA-event and host-clock samples) and trtexec's summary, in the shape
people know from trtexec: min / mean / median / p90 / p95 / p99 / max, plus the coefficient of variation. Pure."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

UNSTABLE_COV = 0.025  # flag a series as unstable above 2.5 % coefficient of variation

_TRTEXEC_SECTIONS = {  # most specific first: "H2D Latency" must not count as "Latency"
    "host_e2e": r"End-to-End Host Latency",
    "h2d": r"H2D Latency",
    "d2h": r"D2H Latency",
    "gpu_compute": r"GPU Compute Time",
    "enqueue": r"Enqueue Time",
    "latency": r"Latency",
}
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*([0-9.eE+-]+)\s*ms")


def percentile(sorted_ms: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending series (no interpolation)."""
    if not sorted_ms:
        return math.nan
    index = min(len(sorted_ms) - 1, max(0, math.ceil(len(sorted_ms) * pct / 100.0) - 1))
    return float(sorted_ms[index])


def summarize_ms(samples: Sequence[float]) -> dict[str, Any]:
    """min/mean/median/p90/p95/p99/max of millisecond samples, their CoV and whether that is unstable."""
    values = sorted(float(x) for x in samples)
    n = len(values)
    if n == 0:
        raise ValueError("no timing samples")
    mean = sum(values) / n
    var = sum((x - mean) ** 2 for x in values) / n
    mid = n // 2
    median = values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2
    cov = math.sqrt(var) / mean if mean > 0 else 0.0
    return {
        "n": n, "min_ms": values[0], "mean_ms": mean, "median_ms": median,
        "p90_ms": percentile(values, 90), "p95_ms": percentile(values, 95), "p99_ms": percentile(values, 99),
        "max_ms": values[-1], "cov": cov, "unstable": cov > UNSTABLE_COV,
    }


def parse_trtexec(text: str) -> dict[str, Any]:
    """The performance summary of trtexec's log: {section: {min_ms, mean_ms, median_ms, p90_ms, ...}},
    plus throughput_qps when present. Unknown lines are ignored, so version differences only drop fields."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        m = re.search(r"Throughput:\s*([0-9.eE+-]+)\s*qps", line)
        if m:
            out["throughput_qps"] = float(m.group(1))
            continue
        for key, label in _TRTEXEC_SECTIONS.items():
            found = re.search(rf"\b{label}\s*:", line)
            if found:
                if key in out:
                    break
                stats = {}
                for name, pct, value in _STAT.findall(line[found.end():]):
                    field = f"p{int(float(pct))}_ms" if pct else f"{name}_ms"
                    stats[field] = float(value)
                if stats:
                    out[key] = stats
                break
    return out


__all__ = ["UNSTABLE_COV", "parse_trtexec", "percentile", "summarize_ms"]
