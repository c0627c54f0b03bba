"""Device memory, pinned host memory, streams, events and device properties through cuda-python's runtime API
(`cuda.bindings.runtime`, or `cuda.cudart` in older cuda-python). No torch, no pycuda. Imported only on a GPU path.

cuda-python returns a tuple `(error, *values)` from every call; `call()` turns a non-success error into an
EdgeDeployError naming the call.
"""

from __future__ import annotations

import ctypes
import functools
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.errors import EdgeDeployError

CUDA_PYTHON_HINT = ('cuda-python is not installed: pip install "cuda-python>=12.6,<13" (the TensorRT runner moves '
                    'data with it; cuda-python 13 only with a CUDA 13 driver: JetPack 7, or x86 with CUDA 13)')
CUDA_PYTHON_PIN = ('install the cuda-python major of the driver\'s CUDA: pip install "cuda-python>=12.6,<13" on '
                   'CUDA 12 (JetPack 6, driver 12.x), "cuda-python>=13,<14" on CUDA 13 (JetPack 7)')


def bindings_vs_driver() -> str:
    """cuda-python's version and the driver's CUDA version, in words (cudaDriverGetVersion works with any driver)."""
    rt = runtime()
    try:
        import cuda.bindings as bindings

        have = getattr(bindings, "__version__", "?")
    except ImportError:
        have = "?"
    err, version = rt.cudaDriverGetVersion()
    driver = f"{version // 1000}.{(version % 1000) // 10}" if err == rt.cudaError_t.cudaSuccess else "unknown"
    return f"cuda-python {have} needs a newer driver than this one (CUDA {driver})"


@functools.lru_cache(maxsize=1)
def runtime() -> Any:
    try:
        from cuda.bindings import runtime as rt  # cuda-python 12.6+
    except ImportError:
        try:
            from cuda import cudart as rt  # older cuda-python
        except ImportError:
            raise EdgeDeployError(CUDA_PYTHON_HINT) from None
    return rt


def call(result: Any, what: str) -> Any:
    """Unpack a cuda-python result tuple; raise on an error code."""
    rt = runtime()
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if err != rt.cudaError_t.cudaSuccess:
        name = getattr(err, "name", str(err))
        if name == "cudaErrorInsufficientDriver":
            raise EdgeDeployError(f"CUDA call {what} failed: {name}: {bindings_vs_driver()}",
                                  fix=CUDA_PYTHON_PIN)
        try:
            text = rt.cudaGetErrorString(err)[1]
            text = text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # noqa: BLE001 - the error string is a courtesy
            text = ""
        raise EdgeDeployError(f"CUDA call {what} failed: {name}" + (f" ({text})" if text else ""),
                              fix="check the GPU driver (nvidia-smi / tegrastats) and that no other process holds "
                                  "the GPU memory")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _native_handle_reader() -> Any:
    """cuda-python's documented reader of a handle's value (cuda.bindings.utils.get_cuda_native_handle, 12.9.1+ and
    13.x; it replaces int(handle), NVIDIA/cuda-python#564), or None on releases that predate it."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return None
    return get_cuda_native_handle


def handle(obj: Any) -> int:
    """The native value of a cuda-python handle (a stream or event: what TensorRT's execute_async_v3 takes), or of a
    pointer (cuda-python returns those as ints). Never `getPtr()`: that is the address of the Python object's storage
    of the handle, not the handle."""
    if isinstance(obj, int):
        return obj
    reader = _native_handle_reader()
    if reader is not None:
        return int(reader(obj))
    try:
        return int(obj)  # cuda-python before 12.9.1: int() is how a handle's value is read
    except TypeError:
        raise EdgeDeployError(f"cannot read the CUDA handle value of {type(obj).__name__}",
                              fix="upgrade cuda-python (pip install -U cuda-python)") from None


def is_jetson() -> bool:
    return platform.machine() == "aarch64" and Path("/etc/nv_tegra_release").exists()


def device_info(device: int | None = None) -> dict[str, Any]:
    """Name, compute capability and versions of the current (or given) CUDA device."""
    rt = runtime()
    if device is None:
        device = call(rt.cudaGetDevice(), "cudaGetDevice")
    prop = call(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\x00", 1)[0].decode(errors="replace")
    info = {
        "name": str(name).strip(),
        "compute_capability": f"{prop.major}.{prop.minor}",
        "device_index": int(device),
        "total_memory_mb": int(prop.totalGlobalMem) // (1 << 20),
        "integrated": bool(getattr(prop, "integrated", False)),
    }
    for key, fn in (("cuda_driver", "cudaDriverGetVersion"), ("cuda_runtime", "cudaRuntimeGetVersion")):
        try:
            v = int(call(getattr(rt, fn)(), fn))
            info[key] = f"{v // 1000}.{(v % 1000) // 10}"
        except Exception:  # noqa: BLE001 - versions are informative only
            info[key] = None
    return info


class DeviceBuffer:
    def __init__(self, nbytes: int):
        self.nbytes = max(int(nbytes), 1)
        self.ptr = handle(call(runtime().cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})"))

    def free(self) -> None:
        if self.ptr:
            call(runtime().cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class PinnedBuffer:
    """Page-locked host memory (fast, asynchronous copies), viewed as a numpy array."""

    def __init__(self, nbytes: int):
        self.nbytes = max(int(nbytes), 1)
        self.ptr = handle(call(runtime().cudaMallocHost(self.nbytes), f"cudaMallocHost({self.nbytes})"))
        self._raw = (ctypes.c_uint8 * self.nbytes).from_address(self.ptr)

    def view(self, dtype: np.dtype, count: int) -> np.ndarray:
        dtype = np.dtype(dtype)
        if count * dtype.itemsize > self.nbytes:
            raise EdgeDeployError(f"{count} × {dtype} does not fit the {self.nbytes}-byte staging buffer")
        return np.frombuffer(self._raw, dtype=dtype, count=count)

    def free(self) -> None:
        if self.ptr:
            self._raw = None
            call(runtime().cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class Stream:
    def __init__(self) -> None:
        self.obj = call(runtime().cudaStreamCreate(), "cudaStreamCreate")
        self.handle = handle(self.obj)

    def synchronize(self) -> None:
        call(runtime().cudaStreamSynchronize(self.obj), "cudaStreamSynchronize")

    def spin_wait(self) -> None:
        """Wait by polling cudaStreamQuery (busy-waiting, as trtexec --useSpinWait): on a Jetson's slow CPU this
        wakes up sooner than a blocking synchronize, at the cost of one busy core."""
        rt = runtime()
        while True:
            err = rt.cudaStreamQuery(self.obj)
            err = err[0] if isinstance(err, tuple) else err
            if err != rt.cudaError_t.cudaErrorNotReady:
                call((err,), "cudaStreamQuery")
                return

    def destroy(self) -> None:
        if self.obj is not None:
            call(runtime().cudaStreamDestroy(self.obj), "cudaStreamDestroy")
            self.obj = None


class Event:
    def __init__(self) -> None:
        self.obj = call(runtime().cudaEventCreate(), "cudaEventCreate")

    def record(self, stream: Stream) -> None:
        call(runtime().cudaEventRecord(self.obj, stream.obj), "cudaEventRecord")

    def ms_since(self, start: Event) -> float:
        """Milliseconds from `start` to this event (both recorded and complete)."""
        return float(call(runtime().cudaEventElapsedTime(start.obj, self.obj), "cudaEventElapsedTime"))

    def destroy(self) -> None:
        if self.obj is not None:
            call(runtime().cudaEventDestroy(self.obj), "cudaEventDestroy")
            self.obj = None


class Graph:
    """A CUDA graph captured from the work queued on a stream between `begin` and `end` (TensorRT's enqueueV3 can be
    captured, as trtexec --useCudaGraph does), launched again with one call: less CPU per inference."""

    def __init__(self, stream: Stream) -> None:
        self.stream, self.graph, self.exec = stream, None, None
        rt = runtime()
        call(rt.cudaStreamBeginCapture(stream.obj, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
             "cudaStreamBeginCapture")

    def end(self) -> None:
        """Stop capturing and instantiate; raises EdgeDeployError when the capture was invalidated."""
        rt = runtime()
        self.graph = call(rt.cudaStreamEndCapture(self.stream.obj), "cudaStreamEndCapture")
        self.exec = call(rt.cudaGraphInstantiate(self.graph, 0), "cudaGraphInstantiate")

    def launch(self) -> None:
        call(runtime().cudaGraphLaunch(self.exec, self.stream.obj), "cudaGraphLaunch")

    def destroy(self) -> None:
        rt = runtime()
        if self.exec is not None:
            call(rt.cudaGraphExecDestroy(self.exec), "cudaGraphExecDestroy")
            self.exec = None
        if self.graph is not None:
            call(rt.cudaGraphDestroy(self.graph), "cudaGraphDestroy")
            self.graph = None


def upload(dst: DeviceBuffer, array: np.ndarray) -> None:
    """Synchronous host→device copy of a C-contiguous array (the calibrator's batches: TensorRT reads them as soon as
    get_batch returns)."""
    rt = runtime()
    array = np.ascontiguousarray(array)
    if array.nbytes > dst.nbytes:
        raise EdgeDeployError(f"{array.nbytes} bytes do not fit the {dst.nbytes}-byte device buffer")
    call(rt.cudaMemcpy(dst.ptr, array.ctypes.data, array.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice),
         "cudaMemcpy(host→device)")


def copy_h2d(dst: DeviceBuffer, src_ptr: int, nbytes: int, stream: Stream) -> None:
    rt = runtime()
    call(rt.cudaMemcpyAsync(dst.ptr, src_ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.obj),
         "cudaMemcpyAsync(host→device)")


def copy_d2h(dst_ptr: int, src: DeviceBuffer, nbytes: int, stream: Stream) -> None:
    rt = runtime()
    call(rt.cudaMemcpyAsync(dst_ptr, src.ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.obj),
         "cudaMemcpyAsync(device→host)")


__all__ = ["CUDA_PYTHON_HINT", "CUDA_PYTHON_PIN", "DeviceBuffer", "Event", "Graph", "PinnedBuffer", "Stream",
           "bindings_vs_driver", "call", "copy_d2h", "copy_h2d", "device_info", "handle", "is_jetson", "runtime",
           "upload"]
