"""OpenVINO IR (FP32/FP16/INT8) for Intel/AMD CPUs and iGPUs.

INT8: the precision stage quantizes with NNCF and hands build() the quantized IR (model.xml); build() places it
atomically like the FP32/FP16 IR.

The CPU plugin silently runs an "FP32" IR in bf16 on CPUs that support it, so every compile pins
INFERENCE_PRECISION_HINT and the runner reports the value the plugin actually uses.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgedeploy import fileio
from edgedeploy.backends.base import BuildResult, TargetKind
from edgedeploy.config import BuildSpec, OpenVINOSettings
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.precision.openvino_convert import convert_onnx
from edgedeploy.precision.stage import PrecisionRoute

_DEFAULT_HINT = {"fp32": "f32", "fp16": "f16", "int8": "f32"}  # int8: the layers NNCF left in float run f32


class OpenVINOBackend:
    name = "openvino"
    precisions = ("fp32", "fp16", "int8")

    def missing(self) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "OpenVINO is not installed: pip install openvino"
        return None

    def build(self, onnx_path: Path, out_dir: Path, precision: str,
              settings: OpenVINOSettings | None = None) -> BuildResult:
        import openvino as ov

        if precision not in self.precisions:
            raise UsageError(f"the openvino target builds {', '.join(self.precisions)} here, not {precision}")
        if precision == "int8" or Path(onnx_path).suffix == ".xml":
            return self._place_ir(Path(onnx_path), out_dir, precision)
        model = convert_onnx(Path(onnx_path))
        staged = fileio.staging_dir(out_dir)
        ov.save_model(model, str(staged / "model.xml"), compress_to_fp16=(precision == "fp16"))
        for name in ("model.xml", "model.bin"):
            with open(staged / name, "rb") as f:
                os.fsync(f.fileno())
        fileio.replace_dir(staged, out_dir)
        xml = out_dir / "model.xml"
        return BuildResult(artifact=xml, files=[xml, out_dir / "model.bin"],
                           info={"precision": precision, "weights": "fp16" if precision == "fp16" else "fp32",
                                 "openvino_version": ov.get_version()})

    def _place_ir(self, xml: Path, out_dir: Path, precision: str) -> BuildResult:
        """Copy an IR made by the precision stage (NNCF) into out_dir atomically."""
        import openvino as ov

        if xml.suffix != ".xml" or not xml.is_file():
            raise UsageError("OpenVINO INT8 builds from the precision stage's NNCF-quantized IR (model.xml)",
                             where=str(xml), fix="run the whole pipeline (edgedeploy build --precision int8)")
        staged = fileio.staging_dir(out_dir)
        for src, name in ((xml, "model.xml"), (xml.with_suffix(".bin"), "model.bin")):
            fileio.write_bytes(staged / name, src.read_bytes())
        fileio.replace_dir(staged, out_dir)
        xml_out = out_dir / "model.xml"
        return BuildResult(artifact=xml_out, files=[xml_out, out_dir / "model.bin"],
                           info={"precision": precision, "weights": "int8 (NNCF FakeQuantize)" if precision == "int8"
                                 else "as given", "openvino_version": ov.get_version()})

    def load(self, build: BuildResult, settings: OpenVINOSettings | None = None,
             threads: int | None = None) -> OpenVINORunner:
        settings = settings or OpenVINOSettings()
        precision = build.info.get("precision", "fp32")
        hint = settings.inference_precision if settings.inference_precision != "auto" else _DEFAULT_HINT[precision]
        return OpenVINORunner(build.artifact, settings.device, hint, threads)


@contextlib.contextmanager
def _native_stderr_quiet() -> Iterator[None]:
    """Native libraries' own writes to file descriptor 2 discarded for the block (Python's sys.stderr is untouched
    in between: nothing of ours is printed there meanwhile); the exception they raise still says what failed."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _runtime_error(error: Exception, xml: Path, doing: str) -> EdgeDeployError:
    """OpenVINO's exception as one line naming the IR and what to do (its last line: the first ones are C++ source
    locations)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = (lines[-1] if lines else type(error).__name__).rstrip(".")
    if "allocate" in text.lower() or "memory" in text.lower():
        fix = "the model needs more memory than this machine has: check its shapes, or use fewer samples"
    else:
        fix = ("rebuild the artifact with this OpenVINO (edgedeploy build), or check `openvino.device` and that "
               "OpenVINO itself compiles and runs it (benchmark_app -m MODEL.xml)")
    return EdgeDeployError(f"OpenVINO {doing}: {text}", where=str(xml), fix=fix)


class OpenVINORunner:
    def __init__(self, xml: Path, device: str, precision_hint: str, threads: int | None = None):
        import openvino as ov

        core = ov.Core()
        config = self.compile_config(precision_hint, threads)
        self._core, self._xml, self._device, self._config = core, xml, device, config
        self._throughput = None  # compiled with the THROUGHPUT hint on first use by run_many
        try:
            with _native_stderr_quiet():  # a malformed IR makes each frontend OpenVINO tries log C++ errors there
                self.compiled = core.compile_model(str(xml), device, config)
            self.request = self.compiled.create_infer_request()
        except Exception as e:  # OpenVINO raises RuntimeError (and its own types) for a bad IR, device or memory
            raise _runtime_error(e, xml, f"cannot compile the model for {device}") from None
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self.output_names = [p.get_any_name() for p in self.compiled.outputs]
        self.conditions = {
            "backend": "openvino",
            "version": ov.get_version(),
            "device": device,
            "precision_hint_requested": precision_hint,
            "precision_hint_effective": self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")) or threads or os.cpu_count(),
            "performance_hint": "LATENCY",
        }

    @staticmethod
    def compile_config(precision_hint: str, threads: int | None = None) -> dict[str, object]:
        """The properties every synchronous compile uses (tools/bench_latency.py hands the same to benchmark_app)."""
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": precision_hint, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        return config

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # synchronous: the inputs outlive the call, so OpenVINO may read them in place; outputs are copied out of
        # the request's buffers before the next call reuses them (saves ~30 µs per call over the copying defaults)
        try:
            results = self.request.infer(feeds, share_inputs=True, share_outputs=True)
        except Exception as e:
            raise _runtime_error(e, self._xml, "failed running the model") from None
        return {name: np.array(value, copy=True) for name, value in zip(self.output_names, results.values())}

    def last_latency_ms(self) -> float:
        return float(self.request.latency)  # the plugin's own timing of the last infer(), in ms

    def run_many(self, feeds: dict[str, np.ndarray], count: int, requests: int | None = None) -> dict:
        """Throughput: an AsyncInferQueue of `requests` (default: the plugin's optimal number) on a compilation
        with the THROUGHPUT hint and the same precision hint and threads; outputs are discarded."""
        import openvino as ov

        if self._throughput is None:
            try:
                self._throughput = self._core.compile_model(str(self._xml), self._device,
                                                            {**self._config, "PERFORMANCE_HINT": "THROUGHPUT"})
            except Exception as e:
                raise _runtime_error(e, self._xml, f"cannot compile the model for {self._device}") from None
            self._queues: dict[int, ov.AsyncInferQueue] = {}
        n = requests or int(self._throughput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = self._queues.get(n)
        if queue is None:
            queue = self._queues[n] = ov.AsyncInferQueue(self._throughput, n)
        for _ in range(count):
            queue.start_async(feeds)
        queue.wait_all()
        return {"requests": n, "streams": int(self._throughput.get_property("NUM_STREAMS")),
                "performance_hint": "THROUGHPUT",
                "threads": int(self._throughput.get_property("INFERENCE_NUM_THREADS")) or None,
                "api": "openvino.AsyncInferQueue"}


_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}
_FP16_FLAGS = {"avx512_fp16", "amx_fp16"}


def _settings(spec: BuildSpec) -> OpenVINOSettings:
    return spec.openvino


def _route(spec: BuildSpec) -> PrecisionRoute:
    return PrecisionRoute(fp16="backend", int8="nncf-openvino",
                          fp16_method="OpenVINO IR with fp16-compressed weights (save_model compress_to_fp16)")


def _fp16_candidate(spec: BuildSpec, cpu_flags) -> tuple[str, str | None, str | None]:
    """On a CPU, an fp16 IR runs fast only with reduced-float arithmetic: AMX/AVX512-BF16 run bf16 far faster than
    AVX512-FP16 runs f16 (docs/benchmarks.md), and without either it runs at f32 speed."""
    if spec.openvino.device != "CPU":
        return "fp16", None, None
    flags = cpu_flags()
    if _BF16_FLAGS & flags:
        return "bf16", None, "bf16"
    if not _FP16_FLAGS & flags:
        return "fp16", "this CPU has no bf16/fp16 arithmetic: an fp16 IR would run at f32 speed", None
    return "fp16", None, None


def _with_hint(spec: BuildSpec, hint: str) -> BuildSpec:
    return spec.model_copy(update={"openvino": spec.openvino.model_copy(update={"inference_precision": hint})})


TARGET = TargetKind("openvino", OpenVINOBackend, settings=_settings, precision_route=_route,
                    fp16_candidate=_fp16_candidate, with_hint=_with_hint)
