"""A conformance stand-in for TensorRT, generated from NVIDIA's own API surface, to run edgedeploy's real TensorRT code
on machines without a GPU.

`tests/backends/tensorrt/trt_surfaces/<version>.json` (written by tools/trt_surface.py from NVIDIA/TensorRT's binding
sources) decides what exists; generate.py makes a strict `tensorrt` module from it; behaviors.py models what the calls edgedeploy
makes do; cuda.py stands in for cuda-python on NumPy buffers. `install()` puts both in `sys.modules`.

This is a conformance check, not a backend: no engine is built or run, no number it produces is a measurement, and
nothing here may be used to claim that edgedeploy ran on TensorRT. It proves that our code calls each release's API
by its real names and arguments, follows its protocols, and handles its documented failure returns.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .behaviors import BLOB_MAGIC, Model
from .cuda import FLAVOURS, CudaStandIn
from .generate import NotModelled, load_surface, surface_versions

__all__ = ["BLOB_MAGIC", "FLAVOURS", "CudaStandIn", "Model", "NotModelled", "install", "load_surface",
           "modules", "surface_versions"]


def modules(model: Model) -> dict[str, types.ModuleType]:
    """The sys.modules entries for TensorRT and cuda-python that `model` stands in for."""
    cuda_pkg = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    runtime = model.cuda.module()
    cuda_pkg.bindings, bindings.runtime = bindings, runtime
    bindings.__version__ = model.cuda.bindings_version
    entries = {"tensorrt": model.trt, "cuda": cuda_pkg, "cuda.bindings": bindings, "cuda.bindings.runtime": runtime}
    utils = model.cuda.utils_module()
    if utils is not None:
        bindings.utils = utils
        entries["cuda.bindings.utils"] = utils
    else:
        entries["cuda.bindings.utils"] = None  # `import cuda.bindings.utils` fails, as in cuda-python 12.6
    return entries


def install(monkeypatch: Any, version: str, *, flavour: str = "13", compute_capability: tuple[int, int] = (8, 7),
            driver: int | None = None, **switches: Any) -> Model:
    """Make `import tensorrt` and `cuda.bindings.runtime` the stand-ins for this test (undone by monkeypatch)."""
    from edgedeploy.backends import trt_cuda

    model = Model(load_surface(version), CudaStandIn(flavour=flavour, compute_capability=compute_capability,
                                                     driver=driver), **switches)
    for name, module in modules(model).items():
        monkeypatch.setitem(sys.modules, name, module)
    runtime = trt_cuda.runtime
    if hasattr(runtime, "cache_clear"):  # trt_cuda caches the module per process; each test has its own stand-in
        runtime.cache_clear()
        monkeypatch.setattr(trt_cuda, "runtime", runtime.__wrapped__)
    return model
