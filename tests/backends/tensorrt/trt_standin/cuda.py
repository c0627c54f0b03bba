"""A CPU stand-in for the cuda-python runtime calls edgedeploy makes (`cuda.bindings.runtime`), on NumPy buffers.

Device and pinned allocations are NumPy arrays addressed by their real host address, so copies are real `memmove`s
and the TensorRT stand-in can read what was copied. Every device-side pointer is checked against the live
allocations, so a wrong pointer is an error code, never a write to random memory. Streams and events are objects
whose native handle is a number this stand-in hands out; `getPtr()` returns the address of the handle's storage, as
cuda-python's does, which is not the handle. Nothing runs on a GPU: event times are host clock readings, used only to
exercise the code that reads them, never reported as measurements.

Work on a stream is asynchronous, as on a GPU: cudaMemcpyAsync, cudaEventRecord and TensorRT's execute_async_v3 (which
enqueues through `enqueue`) only queue their work on the stream; it happens, in stream order, when the host waits
for it: cudaStreamSynchronize (the whole stream), cudaEventSynchronize (the stream up to that event), or an
implicitly synchronizing call (cudaMemcpy, cudaFree, cudaFreeHost, cudaStreamDestroy, cudaDeviceSynchronize). So code
that reads its outputs without waiting reads what was there before (stale data), as it would on a GPU.

Flavours model the cuda-python releases edgedeploy meets:
- "13":   `cuda.bindings.runtime` and `cuda.bindings.utils.get_cuda_native_handle` (12.9.1+ and 13.x); int() works.
- "12.6": `cuda.bindings.runtime` without `get_cuda_native_handle`; int() is the way to read a handle.
- "strict": as "13", but int() on a handle warns (DeprecationWarning) and `getPtr()` is all older code falls back
  to: it checks that our code uses get_cuda_native_handle, which cuda-python added to replace int()
  (NVIDIA/cuda-python#564, #773).
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import time
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FLAVOURS = ("13", "12.6", "strict")


class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidDevicePointer = 17
    cudaErrorInvalidResourceHandle = 400
    cudaErrorNotReady = 600
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901


class cudaStreamCaptureMode(enum.IntEnum):  # noqa: N801
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


_MESSAGES = {
    cudaError_t.cudaSuccess: b"no error",
    cudaError_t.cudaErrorInvalidValue: b"invalid argument",
    cudaError_t.cudaErrorMemoryAllocation: b"out of memory",
    cudaError_t.cudaErrorStreamCaptureUnsupported: b"operation not permitted when stream is capturing",
    cudaError_t.cudaErrorStreamCaptureInvalidated: b"operation failed due to a previous error during capture",
    cudaError_t.cudaErrorInsufficientDriver: b"CUDA driver version is insufficient for CUDA runtime version",
    cudaError_t.cudaErrorInvalidDevicePointer: b"invalid device pointer",
    cudaError_t.cudaErrorInvalidResourceHandle: b"invalid resource handle",
    cudaError_t.cudaErrorNotReady: b"device not ready",
}


class _Handle:
    """A cuda-python handle object: its native value via get_cuda_native_handle or int(), getPtr() → storage."""

    kind = "handle"

    def __init__(self, value: int = 0, *, strict: bool = False):
        self._storage = ctypes.c_void_p(int(value))
        self._strict = strict

    @property
    def native(self) -> int:
        return int(self._storage.value or 0)

    def __int__(self) -> int:
        if self._strict:
            warnings.warn(f"int({type(self).__name__}) is going away: use cuda.bindings.utils."
                          f"get_cuda_native_handle", DeprecationWarning, stacklevel=2)
        return self.native

    def getPtr(self) -> int:  # noqa: N802 - cuda-python's name
        return ctypes.addressof(self._storage)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} 0x{self.native:x}>"


class cudaStream_t(_Handle):  # noqa: N801
    kind = "stream"


class cudaEvent_t(_Handle):  # noqa: N801
    kind = "event"


@dataclass
class DeviceProp:
    name: bytes
    major: int
    minor: int
    totalGlobalMem: int  # noqa: N815
    integrated: int = 0


@dataclass
class CudaStandIn:
    """The state behind the stand-in runtime module: allocations, streams, events, the pretend device."""

    flavour: str = "13"
    compute_capability: tuple[int, int] = (8, 7)
    device_name: str = "edgedeploy CPU stand-in (no GPU)"
    total_memory: int = 8 << 30
    driver: int | None = None  # the driver's CUDA version (12060 = 12.6); default: the bindings' own major
    fail: dict[str, int] = field(default_factory=dict)  # call name → fail after this many more successes
    device: dict[int, np.ndarray] = field(default_factory=dict)
    pinned: dict[int, np.ndarray] = field(default_factory=dict)
    streams: dict[int, cudaStream_t] = field(default_factory=dict)
    events: dict[int, float | None] = field(default_factory=dict)
    queues: dict[int, list[tuple[str, Any]]] = field(default_factory=dict)  # stream → queued (what, work)
    recorded: dict[int, tuple[int, Any]] = field(default_factory=dict)  # event → (its stream, its queued marker)
    capturing: dict[int, list[tuple[str, Any]]] = field(default_factory=dict)  # stream → work captured so far
    invalidated: set[int] = field(default_factory=set)  # streams whose capture met an uncapturable call
    graphs: dict[int, list[tuple[str, Any]]] = field(default_factory=dict)  # graph / graph exec → its work
    calls: list[str] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(0x7E000010, 0x10))

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"unknown cuda flavour {self.flavour!r}; one of {FLAVOURS}")

    # -------------------------------------------------------------------------------------------- helpers
    def _failing(self, name: str) -> bool:
        self.calls.append(name)
        if name not in self.fail:
            return False
        if self.fail[name] <= 0:
            return True
        self.fail[name] -= 1
        return False

    def _native(self, obj: Any, kind: str) -> int | None:
        if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
            return int(obj)
        if isinstance(obj, _Handle) and obj.kind == kind:
            return obj.native
        return None

    def device_range_ok(self, ptr: int, nbytes: int) -> bool:
        return self._inside(self.device, ptr, nbytes)

    @staticmethod
    def _inside(table: dict[int, np.ndarray], ptr: int, nbytes: int) -> bool:
        return any(base <= ptr and ptr + nbytes <= base + arr.nbytes for base, arr in table.items())

    def read_device(self, ptr: int, nbytes: int) -> bytes:
        if not self.device_range_ok(ptr, nbytes):
            raise ValueError(f"0x{ptr:x}+{nbytes} is not inside a live device allocation")
        return ctypes.string_at(ptr, nbytes)

    def write_device(self, ptr: int, data: bytes) -> None:
        if not self.device_range_ok(ptr, len(data)):
            raise ValueError(f"0x{ptr:x}+{len(data)} is not inside a live device allocation")
        ctypes.memmove(ptr, data, len(data))

    def live_stream(self, native: int) -> bool:
        return native == 0 or native in self.streams

    def enqueue(self, native: int, what: str, work: Any) -> None:
        """Queue `work()` on a stream; it runs when the host synchronizes with the stream (see the module doc).
        While the stream is being captured, the work goes into the graph instead and does not run."""
        if int(native) in self.capturing:
            self.capturing[int(native)].append((what, work))
            return
        self.queues.setdefault(int(native), []).append((what, work))

    def uncapturable(self, native: int) -> bool:
        """A call that cannot be captured, made on a capturing stream: the capture is invalidated (CUDA's rule)."""
        if int(native) in self.capturing:
            self.invalidated.add(int(native))
            return True
        return False

    def pending(self, native: int | None = None) -> list[str]:
        """What is queued and not yet done (on one stream, or on all)."""
        queues = self.queues.values() if native is None else [self.queues.get(int(native), [])]
        return [what for queue in queues for what, _ in queue]

    def _drain(self, native: int, until: Any = None) -> None:
        queue = self.queues.get(native, [])
        while queue:
            what, work = queue.pop(0)
            work()
            if until is not None and work is until:
                return

    def _drain_all(self) -> None:
        for native in list(self.queues):
            self._drain(native)

    # ------------------------------------------------------------------------------------------- runtime
    def module(self) -> types.ModuleType:
        """The `cuda.bindings.runtime` stand-in."""
        rt = types.ModuleType("cuda.bindings.runtime")
        rt.cudaError_t, rt.cudaMemcpyKind = cudaError_t, cudaMemcpyKind
        rt.cudaStreamCaptureMode = cudaStreamCaptureMode
        rt.cudaStream_t, rt.cudaEvent_t = cudaStream_t, cudaEvent_t
        for name in dir(self):
            if name.startswith("cuda"):
                setattr(rt, name, getattr(self, name))
        return rt

    def utils_module(self) -> types.ModuleType | None:
        if self.flavour == "12.6":
            return None
        utils = types.ModuleType("cuda.bindings.utils")

        def get_cuda_native_handle(obj: Any) -> int:
            if not isinstance(obj, _Handle):
                raise TypeError(f"Unknown type: {type(obj)}")
            return obj.native

        utils.get_cuda_native_handle = get_cuda_native_handle
        return utils

    def cudaGetErrorString(self, error: cudaError_t) -> tuple:  # noqa: N802
        return cudaError_t.cudaSuccess, _MESSAGES.get(cudaError_t(error), b"unknown error")

    @property
    def bindings_version(self) -> str:
        return "12.6.2" if self.flavour == "12.6" else "13.5.0"

    def _driver_too_old(self) -> bool:
        """cuda-bindings N needs a CUDA N driver: a newer major than the driver's fails every runtime call."""
        return self.driver is not None and self.driver // 1000 < int(self.bindings_version.split(".")[0])

    def cudaGetDevice(self) -> tuple:  # noqa: N802
        if self._driver_too_old():
            return cudaError_t.cudaErrorInsufficientDriver, None
        return cudaError_t.cudaSuccess, 0

    def cudaGetDeviceCount(self) -> tuple:  # noqa: N802
        return cudaError_t.cudaSuccess, 1

    def cudaGetDeviceProperties(self, device: int) -> tuple:  # noqa: N802
        if device != 0:
            return cudaError_t.cudaErrorInvalidValue, None
        major, minor = self.compute_capability
        return cudaError_t.cudaSuccess, DeviceProp(self.device_name.encode(), major, minor, self.total_memory)

    def cudaDriverGetVersion(self) -> tuple:  # noqa: N802
        if self.driver is not None:
            return cudaError_t.cudaSuccess, self.driver
        return cudaError_t.cudaSuccess, 13000 if self.flavour != "12.6" else 12060

    def cudaRuntimeGetVersion(self) -> tuple:  # noqa: N802
        return self.cudaDriverGetVersion()

    def _alloc(self, table: dict[int, np.ndarray], size: int, what: str) -> tuple:
        if self._failing(what) or size <= 0:
            return cudaError_t.cudaErrorMemoryAllocation, None
        raw = np.zeros(int(size) + 256, dtype=np.uint8)  # cudaMalloc's pointers are 256-byte aligned
        offset = -raw.ctypes.data % 256
        arr = raw[offset:offset + int(size)]
        table[arr.ctypes.data] = arr
        return cudaError_t.cudaSuccess, arr.ctypes.data

    def cudaMalloc(self, size: int) -> tuple:  # noqa: N802
        return self._alloc(self.device, size, "cudaMalloc")

    def cudaMallocHost(self, size: int) -> tuple:  # noqa: N802
        return self._alloc(self.pinned, size, "cudaMallocHost")

    def cudaDeviceSynchronize(self) -> tuple:  # noqa: N802
        self._drain_all()
        return (cudaError_t.cudaSuccess,)

    def cudaFree(self, devPtr: int) -> tuple:  # noqa: N802, N803
        self.calls.append("cudaFree")
        self._drain_all()  # cudaFree synchronizes the device
        return (cudaError_t.cudaSuccess,) if self.device.pop(int(devPtr), None) is not None else (
            cudaError_t.cudaErrorInvalidDevicePointer,)

    def cudaFreeHost(self, ptr: int) -> tuple:  # noqa: N802
        self.calls.append("cudaFreeHost")
        self._drain_all()
        return (cudaError_t.cudaSuccess,) if self.pinned.pop(int(ptr), None) is not None else (
            cudaError_t.cudaErrorInvalidValue,)

    def _copy(self, dst: int, src: int, count: int, kind: cudaMemcpyKind, what: str,
              stream: int | None = None) -> tuple:
        if self._failing(what):
            return (cudaError_t.cudaErrorInvalidValue,)
        dst, src, count = int(dst), int(src), int(count)
        kind = cudaMemcpyKind(kind)
        sides = {cudaMemcpyKind.cudaMemcpyHostToDevice: ("host", "device"),
                 cudaMemcpyKind.cudaMemcpyDeviceToHost: ("device", "host"),
                 cudaMemcpyKind.cudaMemcpyDeviceToDevice: ("device", "device")}.get(kind)
        if sides is None or count < 0:
            return (cudaError_t.cudaErrorInvalidValue,)
        for side, ptr in zip(sides, (src, dst)):
            if side == "device" and not self.device_range_ok(ptr, count):
                return (cudaError_t.cudaErrorInvalidValue,)
            if side == "host" and self._inside(self.device, ptr, 1):
                return (cudaError_t.cudaErrorInvalidValue,)
        if stream is None:
            ctypes.memmove(dst, src, count)
        else:
            def copy() -> None:
                for side, ptr in zip(sides, (src, dst)):  # freed while queued: CUDA would fault; make it loud
                    if side == "device" and not self.device_range_ok(ptr, count):
                        raise AssertionError(f"{what}: device memory 0x{ptr:x} was freed before the copy ran")
                ctypes.memmove(dst, src, count)
            self.enqueue(stream, what, copy)
        return (cudaError_t.cudaSuccess,)

    def cudaMemcpy(self, dst: int, src: int, count: int, kind: cudaMemcpyKind) -> tuple:  # noqa: N802
        self._drain_all()  # a blocking copy on the legacy default stream waits for the (blocking) streams
        return self._copy(dst, src, count, kind, "cudaMemcpy")

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: cudaMemcpyKind, stream: Any) -> tuple:  # noqa: N802
        native = self._native(stream, "stream")
        if native is None or not self.live_stream(native):
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        return self._copy(dst, src, count, kind, "cudaMemcpyAsync", stream=native)

    def cudaStreamCreate(self) -> tuple:  # noqa: N802
        if self._failing("cudaStreamCreate"):
            return cudaError_t.cudaErrorMemoryAllocation, None
        stream = cudaStream_t(next(self._ids), strict=self.flavour == "strict")
        self.streams[stream.native] = stream
        return cudaError_t.cudaSuccess, stream

    def cudaStreamBeginCapture(self, stream: Any, mode: Any) -> tuple:  # noqa: N802
        native = self._native(stream, "stream")
        if native is None or native == 0 or native not in self.streams or native in self.capturing:
            return (cudaError_t.cudaErrorInvalidValue,)
        cudaStreamCaptureMode(mode)
        self.capturing[native] = []
        return (cudaError_t.cudaSuccess,)

    def cudaStreamEndCapture(self, stream: Any) -> tuple:  # noqa: N802
        native = self._native(stream, "stream")
        if native not in self.capturing:
            return cudaError_t.cudaErrorInvalidValue, None
        work = self.capturing.pop(native)
        if native in self.invalidated:
            self.invalidated.discard(native)
            return cudaError_t.cudaErrorStreamCaptureInvalidated, None
        graph = next(self._ids)
        self.graphs[graph] = work
        return cudaError_t.cudaSuccess, graph

    def cudaGraphInstantiate(self, graph: Any, flags: int) -> tuple:  # noqa: N802
        if int(graph) not in self.graphs:
            return cudaError_t.cudaErrorInvalidValue, None
        executable = next(self._ids)
        self.graphs[executable] = list(self.graphs[int(graph)])
        return cudaError_t.cudaSuccess, executable

    def cudaGraphLaunch(self, graphExec: Any, stream: Any) -> tuple:  # noqa: N802, N803
        native = self._native(stream, "stream")
        if int(graphExec) not in self.graphs or native is None or not self.live_stream(native):
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        for what, work in self.graphs[int(graphExec)]:
            self.enqueue(native, f"graph: {what}", work)
        return (cudaError_t.cudaSuccess,)

    def cudaGraphExecDestroy(self, graphExec: Any) -> tuple:  # noqa: N802, N803
        return (cudaError_t.cudaSuccess if self.graphs.pop(int(graphExec), None) is not None
                else cudaError_t.cudaErrorInvalidValue,)

    def cudaGraphDestroy(self, graph: Any) -> tuple:  # noqa: N802
        return self.cudaGraphExecDestroy(graph)

    def cudaStreamSynchronize(self, stream: Any) -> tuple:  # noqa: N802
        native = self._native(stream, "stream")
        if native is not None and self.uncapturable(native):
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        ok = native is not None and self.live_stream(native)
        if ok:
            self._drain(native)
        return (cudaError_t.cudaSuccess if ok else cudaError_t.cudaErrorInvalidResourceHandle,)

    def cudaStreamQuery(self, stream: Any) -> tuple:  # noqa: N802
        """Not ready while work is queued; each query lets the "GPU" finish one queued item (so polling ends)."""
        native = self._native(stream, "stream")
        if native is None or not self.live_stream(native):
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        queue = self.queues.get(native, [])
        if queue:
            _, work = queue.pop(0)
            work()
            return (cudaError_t.cudaErrorNotReady,)
        return (cudaError_t.cudaSuccess,)

    def cudaStreamDestroy(self, stream: Any) -> tuple:  # noqa: N802
        native = self._native(stream, "stream")
        if native is not None and native in self.streams:
            self._drain(native)  # queued work completes before the stream's resources go
        ok = native is not None and self.streams.pop(native, None) is not None
        return (cudaError_t.cudaSuccess if ok else cudaError_t.cudaErrorInvalidResourceHandle,)

    def cudaEventCreate(self) -> tuple:  # noqa: N802
        event = cudaEvent_t(next(self._ids), strict=self.flavour == "strict")
        self.events[event.native] = None
        return cudaError_t.cudaSuccess, event

    def cudaEventRecord(self, event: Any, stream: Any) -> tuple:  # noqa: N802
        e, s = self._native(event, "event"), self._native(stream, "stream")
        if e not in self.events or s is None or not self.live_stream(s):
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        self.events[e] = None  # not complete until the stream reaches it

        def reached() -> None:
            self.events[e] = time.perf_counter()
        self.recorded[e] = (s, reached)
        self.enqueue(s, "cudaEventRecord", reached)
        return (cudaError_t.cudaSuccess,)

    def cudaEventSynchronize(self, event: Any) -> tuple:  # noqa: N802
        e = self._native(event, "event")
        if e not in self.events:
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        if e in self.recorded:
            stream, marker = self.recorded[e]
            if any(work is marker for _, work in self.queues.get(stream, [])):
                self._drain(stream, until=marker)
        return (cudaError_t.cudaSuccess,)

    def cudaEventElapsedTime(self, start: Any, end: Any) -> tuple:  # noqa: N802
        a, b = self._native(start, "event"), self._native(end, "event")
        if a not in self.events or b not in self.events:
            return cudaError_t.cudaErrorInvalidResourceHandle, None
        if self.events[a] is None or self.events[b] is None:
            return cudaError_t.cudaErrorNotReady, None
        return cudaError_t.cudaSuccess, (self.events[b] - self.events[a]) * 1e3

    def cudaEventDestroy(self, event: Any) -> tuple:  # noqa: N802
        e = self._native(event, "event")
        ok = e in self.events
        self.events.pop(e, None)
        return (cudaError_t.cudaSuccess if ok else cudaError_t.cudaErrorInvalidResourceHandle,)


__all__ = ["FLAVOURS", "CudaStandIn", "cudaError_t", "cudaEvent_t", "cudaMemcpyKind", "cudaStream_t"]
