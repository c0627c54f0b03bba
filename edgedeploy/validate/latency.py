"""The latency harness: warm-up, then a fixed count or a time budget of timed calls, sync and async.

- **Synchronous latency** (:func:`measure_sync`): one request at a time, each call timed with ``perf_counter`` around
  ``runner.run`` (the Python call and the output copy included: that is what an application sees). A runner whose
  backend times its own calls (``last_latency_ms``, :class:`edgedeploy.backends.base.SelfTimedRunner`: OpenVINO's
  ``InferRequest.latency``) also gets that figure for the same calls (``backend_timing``): the gap between the two
  is the cost of calling from Python (0.15–0.3 ms per call for the demo on this CPU), and the backend's figure is
  the one comparable with C++ tools such as ``benchmark_app``.
- **Asynchronous throughput** (:func:`measure_async`): when the runner has the optional ``run_many`` method
  (:class:`edgedeploy.backends.base.AsyncRunner`), ``count`` inferences are kept in flight ``requests`` at a time —
  OpenVINO: an ``AsyncInferQueue`` on a THROUGHPUT-hint compilation; ONNX Runtime has no async queue, so its runner
  calls ``session.run`` from that many threads on one session. Without ``run_many`` throughput is the synchronous one
  and the report says so (``mode: "sync"``).
- Statistics: min / median / mean / p90 / p99 / max in ms, standard deviation and coefficient of variation
  (std / mean); ``unstable`` when the CoV exceeds the limit (default 5 %: above it a median moves by more than the
  usual regression budgets between runs). p99 from fewer than 100 samples is the maximum, flagged by ``p99_exact``.
- Conditions recorded with every figure: thread count and precision hint (from the runner), the load average per
  core before and after, the CPU time *other* processes used during the timed window (from /proc/stat), the CPU
  frequency governor and current MHz where Linux exposes them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.backends.base import Runner

UNSTABLE_COV = 0.05
MAX_STORED_SAMPLES = 5000
_MIN_TIMED = 5  # a time budget still times at least this many calls
_MIN_WINDOW_TICKS = 50  # shortest window (in clock ticks, 0.5 s at 100 Hz) whose other-process CPU share is reported


def machine_load() -> float | None:
    """1-minute load average per core (outside load skews CPU latency)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_conditions() -> dict[str, Any]:
    """What Linux tells about the CPU right now: governor, mean current MHz, usable cores."""
    out: dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        out["usable_cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    out["cpu_governor"] = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        mhz = [float(line.split(":", 1)[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.startswith("cpu MHz")]
        out["cpu_mhz"] = round(sum(mhz) / len(mhz), 1) if mhz else None
    except (OSError, ValueError):
        out["cpu_mhz"] = None
    return out


class _CpuWindow:
    """CPU busy time of other processes during a window, as a fraction of all cores (Linux /proc/stat)."""

    def __enter__(self) -> _CpuWindow:
        self.other_busy: float | None = None
        self._start = (self._busy_jiffies(), os.times(), time.perf_counter())
        return self

    @staticmethod
    def _busy_jiffies() -> int | None:
        text = _read("/proc/stat")
        if not text:
            return None
        fields = [int(v) for v in text.splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle

    def __exit__(self, *exc: object) -> None:
        busy0, t0, w0 = self._start
        busy1, t1, w1 = self._busy_jiffies(), os.times(), time.perf_counter()
        if busy0 is None or busy1 is None or w1 <= w0:
            return
        hz = os.sysconf("SC_CLK_TCK")
        if w1 - w0 < _MIN_WINDOW_TICKS / hz:  # /proc/stat counts whole ticks: a shorter window reads as 0 or 5000 %
            return
        own = (t1.user - t0.user) + (t1.system - t0.system)
        others = max(0.0, (busy1 - busy0) / hz - own)
        self.other_busy = round(min(1.0, others / ((w1 - w0) * (os.cpu_count() or 1))), 3)


def stats(ms: np.ndarray, unstable_cov: float = UNSTABLE_COV) -> dict[str, Any]:
    """Summary statistics of per-call times in milliseconds."""
    ms = np.asarray(ms, dtype=np.float64)
    if ms.size == 0:
        raise ValueError("no timings")
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    cov = std / mean if mean > 0 else 0.0
    return {
        "count": int(ms.size),
        "min_ms": float(ms.min()),
        "median_ms": float(np.median(ms)),
        "mean_ms": mean,
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "p99_exact": bool(ms.size >= 100),
        "max_ms": float(ms.max()),
        "std_ms": std,
        "cov": cov,
        "unstable": cov > unstable_cov,
        "unstable_cov_limit": unstable_cov,
    }


def _stored(ms: np.ndarray) -> list[float]:
    if ms.size > MAX_STORED_SAMPLES:  # keep the distribution, not every sample
        ms = np.sort(ms)[np.linspace(0, ms.size - 1, MAX_STORED_SAMPLES).astype(int)]
    return [round(float(v), 5) for v in ms]


def _batch(feeds: dict[str, np.ndarray]) -> int:
    return int(next(iter(feeds.values())).shape[0])


def measure_sync(runner: Runner, feeds: dict[str, np.ndarray], warmup: int = 10, iterations: int | None = 100,
                 duration_s: float | None = None, unstable_cov: float = UNSTABLE_COV) -> dict[str, Any]:
    """Synchronous latency: `warmup` untimed calls, then `iterations` timed calls, or as many as fit in
    `duration_s` seconds (at least 5) when a time budget is given."""
    if iterations is None and duration_s is None:
        raise ValueError("give iterations or duration_s")
    for _ in range(warmup):
        runner.run(feeds)
    own_timer = getattr(runner, "last_latency_ms", None)
    times: list[float] = []
    own_ms: list[float] = []
    load_before = machine_load()
    with _CpuWindow() as window:
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            runner.run(feeds)
            t1 = time.perf_counter()
            times.append(t1 - t0)
            if own_timer is not None:
                own_ms.append(own_timer())
            if duration_s is not None:
                if t1 - start >= duration_s and len(times) >= _MIN_TIMED:
                    break
            elif len(times) >= iterations:
                break
        wall = time.perf_counter() - start
    ms = np.asarray(times) * 1e3
    batch = _batch(feeds)
    s = stats(ms, unstable_cov)
    backend_timing = None
    if own_ms:
        b = stats(np.asarray(own_ms), unstable_cov)
        backend_timing = {"source": f"{runner.conditions.get('backend')} own timer of the same calls",
                          **{k: b[k] for k in ("min_ms", "median_ms", "mean_ms", "p90_ms", "p99_ms", "max_ms",
                                                "cov")}}
    return {
        "batch": batch,
        "warmup": warmup,
        "iterations": int(ms.size),
        "budget": {"duration_s": duration_s} if duration_s is not None else {"iterations": iterations},
        **s,
        "throughput_per_s": batch * 1e3 / s["median_ms"],
        "wall_s": wall,
        "load_per_core": load_before,
        "load_per_core_after": machine_load(),
        "other_cpu_busy": window.other_busy,
        "samples_ms": _stored(ms),
        **({"backend_timing": backend_timing} if backend_timing else {}),
    }


def measure_async(runner: Runner, feeds: dict[str, np.ndarray], requests: int | None = None, warmup: int = 10,
                  iterations: int | None = 100, duration_s: float | None = None) -> dict[str, Any]:
    """Throughput with up to `requests` inferences in flight (None: the backend's own choice). Runs
    `iterations` inferences, or chunks of them until `duration_s` has passed. Without the runner's optional
    ``run_many`` the result says ``mode: "sync"`` and holds no figures (throughput = the synchronous one)."""
    run_many = getattr(runner, "run_many", None)
    batch = _batch(feeds)
    if run_many is None:
        return {"mode": "sync", "batch": batch,
                "note": f"{runner.conditions.get('backend', 'this backend')} has no asynchronous API here: "
                        "throughput = batch / synchronous median"}
    info = run_many(feeds, max(warmup, 1), requests)
    chunk = max(4 * int(info.get("requests") or 1), 8)
    load_before = machine_load()
    with _CpuWindow() as window:
        start = time.perf_counter()
        done = 0
        if duration_s is None:
            info = run_many(feeds, iterations, requests)
            done = iterations
        else:
            while time.perf_counter() - start < duration_s or done < _MIN_TIMED:
                info = run_many(feeds, chunk, requests)
                done += chunk
        wall = time.perf_counter() - start
    return {
        "mode": "async",
        "batch": batch,
        "inferences": done,
        "wall_s": wall,
        "throughput_per_s": done * batch / wall,
        "mean_ms_per_inference": wall * 1e3 / done,
        **info,
        "load_per_core": load_before,
        "other_cpu_busy": window.other_busy,
    }


def measure(runner: Runner, feeds: dict[str, np.ndarray], warmup: int = 10, iterations: int | None = 100,
            duration_s: float | None = None, async_requests: int | None = 0,
            unstable_cov: float = UNSTABLE_COV) -> dict[str, Any]:
    """Synchronous latency at this batch size, plus asynchronous throughput unless ``async_requests == 0``.
    With a time budget, each of the two gets ``duration_s``."""
    result = measure_sync(runner, feeds, warmup, iterations, duration_s, unstable_cov)
    if async_requests != 0:
        result["async"] = measure_async(runner, feeds, async_requests, warmup, iterations, duration_s)
    return result
