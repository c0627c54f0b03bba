"""ONNX Runtime on the CPU as every stage uses it: the ONNX reference of an ONNX source, the precision stage's fp16
check, the onnxruntime backend's runner, and the operators ONNX Runtime knows (the checks an ONNX model passes
before anything runs it). ONNX Runtime is a dependency of the package, not an optional SDK."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from edgedeploy.errors import EdgeDeployError


def kernel_ops() -> set[tuple[str, str]] | None:
    """(domain, op type) of every kernel the CPU provider registers ("" is ONNX's domain); None when this ONNX Runtime
    cannot list them."""
    try:
        from onnxruntime.capi import _pybind_state
        kernels = _pybind_state.get_all_opkernel_def()
    except (ImportError, AttributeError):
        return None
    return {(k.domain, k.op_name) for k in kernels if k.provider == "CPUExecutionProvider"}


def ort_error(error: Exception, where: str | os.PathLike, doing: str) -> EdgeDeployError:
    """ONNX Runtime's exception as one line naming the model and what to do (its text without the C++ source
    location and signature it carries)."""
    import onnxruntime as ort

    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (Load model from .*? failed:)?", "", str(error).strip())
    text = re.sub(r"/onnxruntime_src/\S+:\d+ .*?\)(?: const)? (?=[A-Z])", "", text).splitlines()[0].rstrip(".")
    future = re.search(r"Opset (\d+) is under development", text)
    newest = re.search(r"support for domain (\S+) is till opset (\d+)", text)
    if future and newest:
        text = f"the model uses opset {future[1]} of {newest[1]}; this ONNX Runtime supports up to {newest[2]}"
        fix = f"export the model with opset {newest[2]} or older, or upgrade onnxruntime (this is {ort.__version__})"
    elif "allocate" in text or "bad_alloc" in text:
        fix = ("the model asks for more memory than this machine has: check the shapes its nodes compute (a "
               "ConstantOfShape, Expand or Tile fed a huge shape?)")
    elif "Type Error" in text:
        fix = "the graph has a type error the ONNX checker does not catch: fix the model where the message says"
    else:
        fix = "check that ONNX Runtime itself loads and runs the model (onnxruntime.InferenceSession)"
    return EdgeDeployError(f"ONNX Runtime {doing}: {text}", where=os.fspath(where), fix=fix)


class OnnxRuntimeRunner:
    """An ONNX Runtime session on the CPU. `where` names the model in errors (the user's file, when `path` is a
    copy of it); every failure of ONNX Runtime, loading or running, is one EdgeDeployError."""

    def __init__(self, path: Path, threads: int | None = None, where: str | os.PathLike | None = None):
        import onnxruntime as ort

        self.where = where if where is not None else path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 4  # errors come back as exceptions, said once in the error line
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime raises its own exception types, one per status code
            raise ort_error(e, self.where, "cannot load the model") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.conditions = {
            "backend": "onnxruntime",
            "version": ort.__version__,
            "device": "CPU",
            "execution_provider": "CPUExecutionProvider",
            "threads": threads or os.cpu_count(),
        }

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))
        except Exception as e:
            raise ort_error(e, self.where, "failed running the model") from None

    def run_many(self, feeds: dict[str, np.ndarray], count: int, requests: int | None = None) -> dict:
        """Throughput: ONNX Runtime has no asynchronous request queue on the CPU, so `requests` threads (default:
        cores / intra-op threads, at least 1) call `session.run` on this one session concurrently."""
        from concurrent.futures import ThreadPoolExecutor

        threads = self.conditions["threads"] or 1
        n = requests or max(1, (os.cpu_count() or 1) // threads)
        if n == 1:
            for _ in range(count):
                self.run(feeds)
        else:
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(lambda _: self.run(feeds), range(count)))
        return {"requests": n, "api": "concurrent InferenceSession.run calls (no async queue in ONNX Runtime)"}


__all__ = ["OnnxRuntimeRunner", "kernel_ops", "ort_error"]
