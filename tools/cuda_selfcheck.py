#!/usr/bin/env python
"""Run edgedeploy's CUDA layer (edgedeploy/backends/trt_cuda.py) for real on an NVIDIA GPU, without TensorRT.

    python tools/cuda_selfcheck.py                     # on any NVIDIA GPU with cuda-python (cuda-bindings 12.x/13.x)
    python tools/cuda_selfcheck.py --size-mb 256 --iterations 50 --json cuda-selfcheck.json
    python tools/cuda_selfcheck.py --api-only          # no GPU needed: check our calls against the installed bindings

The GPU run allocates device and pinned memory, copies a pattern host→device→host on a stream and compares it,
passes the stream's handle through the integer TensorRT's execute_async_v3 receives (rebuilding a cudaStream_t from
it and running a copy on it), records events around the copies like the TensorRT runner does, and times H2D and D2H
with CUDA events (min/median/p99 and GB/s). It prints each step as it runs and finishes in seconds (well under five
minutes at the defaults). `--api-only` runs without a GPU (as CI does with cuda-bindings 12.x and 13.x): every runtime
call trt_cuda.py makes must exist with the arguments it passes, handles must read back as their native values, and
each call must reach the driver and come back as one EdgeDeployError (no GPU), all with deprecation warnings as errors.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from edgedeploy.backends import trt_cuda  # noqa: E402
from edgedeploy.backends.trt_timing import summarize_ms  # noqa: E402
from edgedeploy.errors import EdgeDeployError, UsageError  # noqa: E402

LAYER = REPO / "edgedeploy" / "backends" / "trt_cuda.py"


class Report:
    """What ran: one line per step as it happens, kept for --json."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def step(self, name: str, fn: Callable[[], str]) -> None:
        start = time.perf_counter()
        detail = fn()
        ms = (time.perf_counter() - start) * 1e3
        self.steps.append({"step": name, "detail": detail, "ms": round(ms, 3)})
        print(f"  ok  {name:<28} {detail}  ({ms:.1f} ms)")


def bindings_description(rt: Any) -> str:
    try:
        import cuda.bindings as bindings

        version = getattr(bindings, "__version__", "?")
    except ImportError:
        version = "? (cuda-python before cuda.bindings)"
    reader = "get_cuda_native_handle" if trt_cuda._native_handle_reader() else "int()"
    return f"{rt.__name__} (cuda-bindings {version}); handles read with {reader}"


# -------------------------------------------------------------------------------------------------- GPU run

def gpu_run(size_mb: int, iterations: int) -> dict[str, Any]:
    rt = trt_cuda.runtime()
    report = Report()
    report.step("import", lambda: bindings_description(rt))
    info = trt_cuda.device_info()  # no GPU: one EdgeDeployError naming the failed call
    report.step("device", lambda: f"{info['name']} (compute capability {info['compute_capability']}, "
                                  f"{info['total_memory_mb']} MiB, driver {info['cuda_driver']}, "
                                  f"runtime {info['cuda_runtime']})")
    nbytes = size_mb << 20
    buffers: list[Any] = []
    stream = trt_cuda.Stream()
    events: list[trt_cuda.Event] = []
    try:
        def allocate() -> str:
            for make in (trt_cuda.DeviceBuffer, trt_cuda.PinnedBuffer, trt_cuda.PinnedBuffer):
                buffers.append(make(nbytes))  # one at a time: a failed allocation frees those made before
            return f"{size_mb} MiB device + 2 × {size_mb} MiB pinned"

        report.step("allocate", allocate)
        device, src, dst = buffers
        pattern = np.arange(nbytes // 4, dtype=np.uint32) * np.uint32(2654435761)

        def round_trip() -> str:
            src.view(np.uint32, pattern.size)[:] = pattern
            dst.view(np.uint32, pattern.size)[:] = 0
            trt_cuda.copy_h2d(device, src.ptr, nbytes, stream)
            trt_cuda.copy_d2h(dst.ptr, device, nbytes, stream)
            stream.synchronize()
            if not np.array_equal(dst.view(np.uint32, pattern.size), pattern):
                raise EdgeDeployError("host→device→host round trip changed the data")
            dst.view(np.uint32, pattern.size)[:] = 0  # again, waiting by polling (the runner's spin-wait)
            trt_cuda.copy_d2h(dst.ptr, device, nbytes, stream)
            stream.spin_wait()
            if not np.array_equal(dst.view(np.uint32, pattern.size), pattern):
                raise EdgeDeployError("a spin-wait returned before the copy was done")
            return f"{nbytes} bytes host→device→host on one stream, identical (synchronize and spin-wait)"

        report.step("round trip", round_trip)

        def handle_through() -> str:
            value = stream.handle
            storage = stream.obj.getPtr() if hasattr(stream.obj, "getPtr") else None
            if value == storage:
                raise EdgeDeployError("the stream handle equals getPtr(): that is the storage, not the stream")
            rebuilt = rt.cudaStream_t(value)  # what TensorRT receives: the integer, as a stream
            dst.view(np.uint32, pattern.size)[:] = 0
            trt_cuda.call(rt.cudaMemcpyAsync(dst.ptr, device.ptr, nbytes,
                                             rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, rebuilt),
                          "cudaMemcpyAsync on the rebuilt stream")
            trt_cuda.call(rt.cudaStreamSynchronize(rebuilt), "cudaStreamSynchronize(rebuilt stream)")
            if not np.array_equal(dst.view(np.uint32, pattern.size), pattern):
                raise EdgeDeployError("a copy on the stream rebuilt from its handle did not arrive")
            return f"handle 0x{value:x} (getPtr() 0x{storage or 0:x}) drives a copy as a cudaStream_t"

        report.step("stream handle", handle_through)

        def copies_between_events() -> tuple[float, float]:
            """One H2D and one D2H copy on the stream, an event before, between and after, as the runner records
            them; their times in ms."""
            events[0].record(stream)
            trt_cuda.copy_h2d(device, src.ptr, nbytes, stream)
            events[1].record(stream)
            trt_cuda.copy_d2h(dst.ptr, device, nbytes, stream)
            events[2].record(stream)
            stream.synchronize()
            return events[1].ms_since(events[0]), events[2].ms_since(events[1])

        def event_pairs() -> str:
            events.extend(trt_cuda.Event() for _ in range(3))
            h2d, d2h = copies_between_events()
            if not (h2d > 0 and d2h > 0):
                raise EdgeDeployError(f"event times are not positive: {h2d} / {d2h} ms")
            return f"events around H2D {h2d:.3f} ms and D2H {d2h:.3f} ms"

        report.step("events", event_pairs)
        timings: dict[str, Any] = {}

        def timed() -> str:
            series: dict[str, list[float]] = {"h2d": [], "d2h": []}
            for i in range(iterations + 2):  # two warm-up rounds
                h2d, d2h = copies_between_events()
                if i >= 2:
                    series["h2d"].append(h2d)
                    series["d2h"].append(d2h)
            for key, values in series.items():
                stats = summarize_ms(values)
                stats["gb_per_s_median"] = nbytes / (stats["median_ms"] * 1e-3) / 1e9
                timings[key] = stats
            return ", ".join(f"{k.upper()} median {v['median_ms']:.3f} ms p99 {v['p99_ms']:.3f} ms "
                             f"({v['gb_per_s_median']:.1f} GB/s)" for k, v in timings.items())

        report.step(f"timing ×{iterations}", timed)
    finally:
        for e in events:
            e.destroy()
        for b in buffers:
            b.free()
        stream.destroy()
    report.step("free", lambda: "events, buffers and stream released")
    return {"mode": "gpu", "device": info, "size_mb": size_mb, "iterations": iterations, "steps": report.steps,
            "timings": timings}


# ---------------------------------------------------------------------------------------------------- API only

def runtime_calls(source: str | None = None) -> dict[str, set[int]]:
    """Every runtime function trt_cuda.py calls (`rt.X(...)` or `runtime().X(...)`), with the argument counts used."""
    calls: dict[str, set[int]] = {}
    for node in ast.walk(ast.parse(source if source is not None else LAYER.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (isinstance(owner, ast.Name) and owner.id == "rt") or (
                    isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "runtime"):
                calls.setdefault(node.func.attr, set()).add(len(node.args) + len(node.keywords))
    return calls


def runtime_attributes(source: str | None = None) -> set[str]:
    """Enum members trt_cuda.py reads, e.g. `cudaMemcpyKind.cudaMemcpyHostToDevice`."""
    found = set()
    for node in ast.walk(ast.parse(source if source is not None else LAYER.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "rt":
            found.add(f"{node.value.attr}.{node.attr}")
    return found


def api_check() -> dict[str, Any]:
    rt = trt_cuda.runtime()
    report = Report()
    report.step("import", lambda: bindings_description(rt))

    def names() -> str:
        problems = []
        calls = runtime_calls()
        for name, counts in sorted(calls.items()):
            fn = getattr(rt, name, None)
            if fn is None:
                problems.append(f"{name} does not exist")
                continue
            try:
                params = inspect.signature(fn).parameters
            except (TypeError, ValueError):
                continue  # no signature to read: the calls below still exercise it
            if any(n != len(params) for n in counts):
                problems.append(f"{name} takes {len(params)} arguments ({', '.join(params)}), we pass {counts}")
        for dotted in sorted(runtime_attributes()):
            owner, member = dotted.split(".")
            if not hasattr(getattr(rt, owner, None), member):
                problems.append(f"{dotted} does not exist")
        if problems:
            raise EdgeDeployError("trt_cuda.py does not match these bindings: " + "; ".join(problems))
        return f"{len(calls)} runtime functions and {len(runtime_attributes())} enum members match"

    report.step("names and signatures", names)

    def handles() -> str:
        for make, value in ((rt.cudaStream_t, 0x1234), (rt.cudaEvent_t, 0x99)):
            if trt_cuda.handle(make(value)) != value:
                raise EdgeDeployError(f"handle({make.__name__}(0x{value:x})) is not 0x{value:x}")
        if trt_cuda.handle(0x42) != 0x42:
            raise EdgeDeployError("a pointer (int) does not pass through handle() unchanged")
        return "cudaStream_t, cudaEvent_t and pointers read back as their native values"

    report.step("handles", handles)

    def each_call_reaches_the_driver() -> str:
        reached = []
        fake_stream = trt_cuda.Stream.__new__(trt_cuda.Stream)
        fake_stream.obj, fake_stream.handle = rt.cudaStream_t(0), 0
        fake_device = trt_cuda.DeviceBuffer.__new__(trt_cuda.DeviceBuffer)
        fake_device.ptr, fake_device.nbytes = 0, 16
        fake_event = trt_cuda.Event.__new__(trt_cuda.Event)
        fake_event.obj = rt.cudaEvent_t(0)
        host = np.zeros(16, np.uint8)
        attempts = {
            "device_info": trt_cuda.device_info, "DeviceBuffer": lambda: trt_cuda.DeviceBuffer(16),
            "PinnedBuffer": lambda: trt_cuda.PinnedBuffer(16), "Stream": trt_cuda.Stream,
            "Event": trt_cuda.Event, "copy_h2d": lambda: trt_cuda.copy_h2d(fake_device, host.ctypes.data, 16,
                                                                            fake_stream),
            "copy_d2h": lambda: trt_cuda.copy_d2h(host.ctypes.data, fake_device, 16, fake_stream),
            "upload": lambda: trt_cuda.upload(fake_device, host),
            "Stream.synchronize": fake_stream.synchronize, "Stream.spin_wait": fake_stream.spin_wait,
            "Event.record": lambda: fake_event.record(fake_stream),
            "Event.ms_since": lambda: fake_event.ms_since(fake_event),
        }
        for what, attempt in attempts.items():
            try:
                result = attempt()
            except EdgeDeployError as e:
                if "CUDA call" not in e.message:
                    raise
                reached.append(what)
                continue
            # a machine with a GPU may get this far; release what was made
            if hasattr(result, "free"):
                result.free()
            elif hasattr(result, "destroy"):
                result.destroy()
            reached.append(what)
        return f"{len(reached)} calls accepted their arguments ({', '.join(reached)})"

    report.step("calls reach the driver", each_call_reaches_the_driver)
    return {"mode": "api", "steps": report.steps}


# ------------------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-only", action="store_true",
                        help="no GPU: check trt_cuda.py's calls against the installed cuda-bindings")
    parser.add_argument("--size-mb", type=int, default=64, help="buffer size for copies and timing (default 64)")
    parser.add_argument("--iterations", type=int, default=20, help="timed copies per direction (default 20)")
    parser.add_argument("--json", type=Path, default=None, help="also write what ran to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if not 1 <= args.size_mb <= 4096:
            raise UsageError(f"--size-mb {args.size_mb} is outside 1..4096")
        if not 1 <= args.iterations <= 10000:
            raise UsageError(f"--iterations {args.iterations} is outside 1..10000")
        print("CUDA layer self-check (edgedeploy/backends/trt_cuda.py)"
              + (": API only, no GPU used" if args.api_only else ""))
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            warnings.simplefilter("error", FutureWarning)
            result = api_check() if args.api_only else gpu_run(args.size_mb, args.iterations)
    except EdgeDeployError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if not args.api_only and "CUDA call" in e.message:
            print("(no usable NVIDIA GPU here? `--api-only` checks the bindings without one)", file=sys.stderr)
        return e.exit_code
    result["seconds"] = round(time.perf_counter() - start, 2)
    print(f"all steps passed in {result['seconds']} s")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))
        print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
