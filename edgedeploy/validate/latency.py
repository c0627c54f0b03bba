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
- **Budget**: a fixed `iterations` count, or as many calls as fit in `duration_s` (at least `_MIN_TIMED`), like
  benchmark_app; with neither given, `DEFAULT_DURATION_S` per batch size, so a fast model gets thousands of calls and
  a slow one still a stable median.
- **Fresh process** (:func:`measure_fresh`): a build measures its artifact in a new Python process (this module run
  as a script), not in the process that has just run torch's exporter and NNCF: their thread pools and gigabytes of
  freed-but-mapped memory made build-time figures swing 1.2-3.5x between rebuilds of the same artifact, while the
  same harness in a fresh process stays within a few percent of benchmark_app. The process imports the backend SDK
  and numpy only, loads the artifact, and times it; an int8 artifact is timed interleaved with the float artifact of
  the same backend (:func:`measure_interleaved`, alternating windows, so outside load hits both alike) and
  :func:`int8_vs_float` says when int8 is the slower one.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy import arrayfile
from edgedeploy.backends import BuildResult, backend_settings, get_backend
from edgedeploy.backends.base import Runner
from edgedeploy.config import BuildSpec
from edgedeploy.errors import EdgeDeployError

UNSTABLE_COV = 0.05
MAX_STORED_SAMPLES = 5000
_MIN_WINDOW_TICKS = 50  # shortest window (in clock ticks, 0.5 s at 100 Hz) whose other-process CPU share is reported
DEFAULT_DURATION_S = 1.0  # per batch size when neither iterations nor duration_s is given
_MIN_TIMED = 10  # a time budget still times at least this many calls
_ROUNDS = 8  # alternating windows per runner when several are timed interleaved (the rounds of a ratio's interval)


def first(inputs: dict[str, np.ndarray], n: int, repeat: bool = False) -> dict[str, np.ndarray]:
    """The first n samples; with `repeat`, tiled up to n when the set is smaller (for latency batches)."""
    out = {}
    for k, v in inputs.items():
        if repeat and len(v) < n:
            v = np.concatenate([v] * (n // len(v) + 1))
        out[k] = np.ascontiguousarray(v[:n])
    return out


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
        "p10_ms": float(np.percentile(ms, 10)),
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


def resolve_budget(iterations: int | None, duration_s: float | None) -> tuple[int | None, float | None]:
    """(iterations, duration_s) to time: a time budget wins, then a count, else DEFAULT_DURATION_S."""
    if duration_s is not None:
        return None, duration_s
    if iterations is not None:
        return iterations, None
    return None, DEFAULT_DURATION_S


class _Window:
    """One run of timed calls of one runner (several windows of one runner are pooled by measure_interleaved)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.own_ms: list[float] = []
        self.wall = 0.0
        self.other_busy: list[float] = []
        self.round_medians: list[float] = []

    def time(self, runner: Runner, feeds: dict[str, np.ndarray], iterations: int | None,
             duration_s: float | None) -> None:
        own_timer = getattr(runner, "last_latency_ms", None)
        count = 0
        first = len(self.times)
        with _CpuWindow() as window:
            start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                runner.run(feeds)
                t1 = time.perf_counter()
                self.times.append(t1 - t0)
                count += 1
                if own_timer is not None:
                    self.own_ms.append(own_timer())
                if duration_s is not None:
                    if t1 - start >= duration_s and count >= _MIN_TIMED:
                        break
                elif count >= iterations:
                    break
            self.wall += time.perf_counter() - start
        self.round_medians.append(float(np.median(self.times[first:])) * 1e3)
        if window.other_busy is not None:
            self.other_busy.append(window.other_busy)


def measure_sync(runner: Runner, feeds: dict[str, np.ndarray], warmup: int = 10, iterations: int | None = 100,
                 duration_s: float | None = None, unstable_cov: float = UNSTABLE_COV) -> dict[str, Any]:
    """Synchronous latency: `warmup` untimed calls, then `iterations` timed calls, or as many as fit in
    `duration_s` seconds (at least _MIN_TIMED) when a time budget is given."""
    return measure_interleaved({"": runner}, feeds, warmup, iterations, duration_s, unstable_cov, rounds=1)[""]


def measure_interleaved(runners: dict[str, Runner], feeds: dict[str, np.ndarray], warmup: int = 10,
                        iterations: int | None = 100, duration_s: float | None = None,
                        unstable_cov: float = UNSTABLE_COV, rounds: int = _ROUNDS) -> dict[str, dict[str, Any]]:
    """Synchronous latency of several runners on the same feeds, in `rounds` alternating windows (the order reversed
    every other round), each runner's windows pooled: each runner gets the whole budget, split across rounds, and
    drifting outside load hits all alike. One runner and one round is :func:`measure_sync`."""
    if iterations is None and duration_s is None:
        raise ValueError("give iterations or duration_s")
    for runner in runners.values():
        for _ in range(warmup):
            runner.run(feeds)
    windows = {name: _Window() for name in runners}
    load_before = machine_load()
    for r in range(rounds):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for name in order:
            per_window = None if iterations is None else max(1, -(-iterations // rounds))
            windows[name].time(runners[name], feeds, per_window, None if duration_s is None else duration_s / rounds)
    load_after = machine_load()
    batch = _batch(feeds)
    out = {}
    for name, w in windows.items():
        ms = np.asarray(w.times) * 1e3
        s = stats(ms, unstable_cov)
        backend_timing = None
        if w.own_ms:
            b = stats(np.asarray(w.own_ms), unstable_cov)
            backend_timing = {"source": f"{runners[name].conditions.get('backend')} own timer of the same calls",
                              **{k: b[k] for k in ("min_ms", "median_ms", "mean_ms", "p90_ms", "p99_ms", "max_ms",
                                                    "cov")}}
        out[name] = {
            "batch": batch,
            "warmup": warmup,
            "iterations": int(ms.size),
            "budget": {"duration_s": duration_s} if duration_s is not None else {"iterations": iterations},
            **({"rounds": rounds, "round_medians_ms": w.round_medians} if rounds > 1 else {}),
            **s,
            "throughput_per_s": batch * 1e3 / s["median_ms"],
            "wall_s": w.wall,
            "load_per_core": load_before,
            "load_per_core_after": load_after,
            "other_cpu_busy": round(float(np.mean(w.other_busy)), 3) if w.other_busy else None,
            "samples_ms": _stored(ms),
            **({"backend_timing": backend_timing} if backend_timing else {}),
        }
    return out


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


def measure_all(runners: dict[str, Runner], inputs: dict[str, np.ndarray], settings,
                batch_sizes: list[int]) -> dict[str, list[dict[str, Any]]]:
    """Every batch size of `settings` (a LatencySettings): each runner's synchronous latency, interleaved when there
    are several, and the first runner's asynchronous throughput unless ``async_requests == 0``."""
    iterations, duration_s = resolve_budget(settings.iterations, settings.duration_s)
    primary = next(iter(runners))
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
    for batch in batch_sizes:
        feeds = first(inputs, batch, repeat=True)
        results = measure_interleaved(runners, feeds, settings.warmup, iterations, duration_s, settings.unstable_cov,
                                      rounds=1 if len(runners) == 1 else _ROUNDS)
        if settings.async_requests != 0:
            results[primary]["async"] = measure_async(runners[primary], feeds, settings.async_requests,
                                                      settings.warmup, iterations, duration_s)
        for name, result in results.items():
            out[name].append(result)
    return out


def measure_fresh(spec, artifacts: dict[str, Any], inputs: dict[str, np.ndarray],
                  batch_sizes: list[int]) -> dict[str, Any]:
    """:func:`measure_all` of `artifacts` (name → BuildResult of `spec.target`; the first is the one reported) in a
    new Python process that imports only the backend SDK; returns ``{"timings": {name: [...]}, "conditions":
    {name: runner conditions}, "peak_rss_mb", "seconds"}`` and, where the backend times its layers, the reported
    artifact's ``"layer_profile"`` at the first batch size."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgedeploy-latency-") as tmp:
        feeds = Path(tmp) / "inputs.npz"
        arrayfile.write_npz(feeds, first(inputs, max(batch_sizes), repeat=True))
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({
            "spec": spec.model_dump(mode="json"), "inputs": str(feeds), "batch_sizes": list(batch_sizes),
            "artifacts": {name: {"path": str(b.artifact), "info": b.info} for name, b in artifacts.items()},
            "result": str(Path(tmp) / "result.json")}))
        proc = subprocess.run([sys.executable, "-m", "edgedeploy.validate.latency", str(job)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise EdgeDeployError(f"latency measurement failed in its own process: {last}",
                                  where=str(next(iter(artifacts.values())).artifact))
        result = json.loads((Path(tmp) / "result.json").read_text())
    result["seconds"] = time.perf_counter() - start
    return result


PROFILE_ITERATIONS = 20  # runs a per-layer profile takes the median of


def layer_profile(runner: Runner, feeds: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """report.json's `layer_profile`: per-layer times at the batch of `feeds`, from a runner whose backend times its
    layers (base.LayerProfilingRunner: TensorRT's IProfiler); None for the others."""
    profile = getattr(runner, "profile_layers", None)  # the optional method of base.LayerProfilingRunner
    if profile is None:
        return None
    return {"profiler": f"{runner.conditions.get('backend', 'backend')} per-layer profiler", "batch": _batch(feeds),
            "iterations": PROFILE_ITERATIONS, "layers": profile(feeds, iterations=PROFILE_ITERATIONS)}


def _fresh_process(job_path: str) -> None:
    """The measuring process of :func:`measure_fresh`."""
    job = json.loads(Path(job_path).read_text())
    spec = BuildSpec.model_validate(job["spec"])
    backend = get_backend(spec.target)
    settings = backend_settings(spec)
    threads = spec.validation.latency.threads
    runners = {name: backend.load(BuildResult(Path(a["path"]), [], a["info"]), settings, threads)
               for name, a in job["artifacts"].items()}
    with np.load(job["inputs"]) as data:
        inputs = {k: data[k] for k in data.files}
    timings = measure_all(runners, inputs, spec.validation.latency, job["batch_sizes"])
    profile = layer_profile(next(iter(runners.values())), first(inputs, job["batch_sizes"][0], repeat=True))
    Path(job["result"]).write_text(json.dumps({
        "timings": timings, "conditions": {name: r.conditions for name, r in runners.items()},
        "peak_rss_mb": peak_rss_mb(), **({"layer_profile": profile} if profile else {})}))


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB: VmHWM (per address space: a spawned process's own, and
    resettable, see edgedeploy.pipeline), else ru_maxrss, which on Linux also counts the parent's image a spawned
    child started as."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Student's t, two-sided 95 %, by degrees of freedom (1-10); above that 1.96 + 2.4/df is within 0.3 %
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def ratio_interval(a_rounds: list[float], b_rounds: list[float]) -> dict[str, Any]:
    """a / b from interleaved timing: the geometric mean of the per-round ratios of medians (both timed in the same
    round, so load that drifts between rounds cancels) with a 95 % t-interval over the rounds' log ratios."""
    logs = np.log(np.asarray(a_rounds, np.float64) / np.asarray(b_rounds, np.float64))
    n = int(logs.size)
    mean = float(logs.mean())
    if n < 2:
        return {"ratio": math.exp(mean), "ci95": [0.0, math.inf], "rounds": n}
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96 + 2.4 / (n - 1)
    half = t * float(logs.std(ddof=1)) / math.sqrt(n)
    return {"ratio": math.exp(mean), "ci95": [math.exp(mean - half), math.exp(mean + half)], "rounds": n}


def ratio_verdict(interval: dict[str, Any], margin: float = 0.0) -> str:
    """`slower` / `faster` when the whole interval lies beyond 1 ± margin, else `within noise`: the timing cannot
    tell the two apart."""
    low, high = interval["ci95"]
    if low > 1 + margin:
        return "slower"
    if high < 1 - margin:
        return "faster"
    return "within noise"


def median_ratio_interval(a_ms: list[float], b_ms: list[float], resamples: int = 400) -> dict[str, Any]:
    """median(a) / median(b) of two separate timings (a report and its baseline, not interleaved) with a 95 %
    bootstrap interval over each run's stored samples; seeded, so the same reports give the same interval."""
    rng = np.random.default_rng(0)
    a, b = np.asarray(a_ms, np.float64), np.asarray(b_ms, np.float64)
    ratios = (np.median(rng.choice(a, (resamples, a.size)), axis=1)
              / np.median(rng.choice(b, (resamples, b.size)), axis=1))
    return {"ratio": float(np.median(a) / np.median(b)),
            "ci95": [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))],
            "method": "bootstrap over each run's samples"}


def int8_vs_float(int8: list[dict[str, Any]], floats: list[dict[str, Any]], margin: float = 0.03,
                  ) -> list[dict[str, Any]]:
    """Per batch size, the int8 artifact against the float artifact of the same backend (same process, interleaved
    rounds): the latency ratio int8/float with its 95 % interval over the rounds, and the verdict: `slower` only when
    the whole interval is more than `margin` above 1 (outside load drifting between windows cannot make the call),
    `within noise` when the interval holds 1."""
    out = []
    for a, f in zip(int8, floats):
        interval = ratio_interval(a.get("round_medians_ms", [a["median_ms"]]),
                                  f.get("round_medians_ms", [f["median_ms"]]))
        verdict = ratio_verdict(interval, margin)
        out.append({"batch": a["batch"], "int8_median_ms": a["median_ms"], "float_median_ms": f["median_ms"],
                    "speedup": f["median_ms"] / a["median_ms"], "ratio": interval["ratio"],
                    "ratio_ci95": interval["ci95"], "rounds": interval["rounds"], "verdict": verdict,
                    "slower": verdict == "slower"})
    return out


def headline(t: dict[str, Any]) -> str:
    """One batch size's figure for a summary line: the median, and its spread when the timing was unstable."""
    text = f"{t['median_ms']:.3g} ms"
    if t.get("unstable"):
        low, high = t.get("p10_ms", t["min_ms"]), t["p90_ms"]
        text += f" (unstable: p10-p90 {low:.3g}-{high:.3g} ms, CoV {t['cov']:.0%})"
    return text


if __name__ == "__main__":
    from edgedeploy.validate import latency as _module  # the package's copy, not this __main__ one

    _module._fresh_process(sys.argv[1])
