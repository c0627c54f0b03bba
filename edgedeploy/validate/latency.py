"""Latency of a runner: warm-up, then timed synchronous calls; percentiles and throughput."""

from __future__ import annotations

import os
import time

import numpy as np

from edgedeploy.backends.base import Runner

_UNSTABLE_COV = 0.10


def machine_load() -> float | None:
    """1-minute load average per core, recorded with every timing (outside load skews CPU latency)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return None


def measure(runner: Runner, feeds: dict[str, np.ndarray], warmup: int = 10, iterations: int = 100) -> dict:
    """Time `iterations` calls after `warmup` ones; milliseconds per call and samples per second."""
    for _ in range(warmup):
        runner.run(feeds)
    times = np.empty(iterations)
    for i in range(iterations):
        start = time.perf_counter()
        runner.run(feeds)
        times[i] = time.perf_counter() - start
    ms = times * 1e3
    batch = next(iter(feeds.values())).shape[0]
    mean = float(ms.mean())
    cov = float(ms.std() / mean) if mean > 0 else 0.0
    return {
        "batch": batch,
        "warmup": warmup,
        "iterations": iterations,
        "min_ms": float(ms.min()),
        "median_ms": float(np.median(ms)),
        "mean_ms": mean,
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "cov": cov,
        "unstable": cov > _UNSTABLE_COV,
        "throughput_per_s": batch * 1e3 / float(np.median(ms)),
        "load_per_core": machine_load(),
    }
