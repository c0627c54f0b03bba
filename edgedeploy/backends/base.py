"""The one small protocol every backend implements, and `TargetKind`, everything else a build decides by target.
SDKs are imported only inside the methods that need them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgedeploy.config import BuildSpec
from edgedeploy.errors import UsageError
from edgedeploy.precision.stage import PrecisionRoute


class Runner(Protocol):
    """A loaded artifact that maps named inputs to named outputs."""

    input_names: list[str]
    output_names: list[str]
    conditions: dict[str, Any]  # what the numbers were measured under: device, threads, precision hint

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class AsyncRunner(Runner, Protocol):
    """Optional: a runner that can keep several inferences in flight (used only by the throughput measurement)."""

    def run_many(self, feeds: dict[str, np.ndarray], count: int, requests: int | None = None) -> dict[str, Any]:
        """Run `feeds` `count` times with up to `requests` in flight (None: the backend's choice); return when all
        have finished, with what they ran under (at least ``requests``)."""
        ...


class SelfTimedRunner(Runner, Protocol):
    """Optional: a runner whose backend times each call itself (OpenVINO's InferRequest.latency), so the harness
    can report the backend's figure beside the Python call's (the difference is the cost of calling from Python)."""

    def last_latency_ms(self) -> float:
        """The backend's own time for the last `run` call, in milliseconds."""
        ...


class LayerProfilingRunner(Runner, Protocol):
    """Optional: a runner whose backend times each layer (TensorRT's IProfiler), for report.json's layer_profile."""

    def profile_layers(self, feeds: dict[str, np.ndarray], iterations: int = 20) -> list[dict[str, Any]]:
        """Run `feeds` `iterations` times; each layer's median time, slowest first: ``{"layer", "median_ms",
        "share" (of the layers' total), "runs"}``."""
        ...


@dataclass
class BuildResult:
    artifact: Path  # the file a runner loads (IR .xml, ONNX, TensorRT plan)
    files: list[Path]  # every file the artifact consists of
    info: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: str
    precisions: tuple[str, ...]

    def missing(self) -> str | None:
        """None when the SDK imports; else one line saying what to install."""

    def build(self, onnx_path: Path, out_dir: Path, precision: str, settings: Any) -> BuildResult: ...

    def load(self, build: BuildResult, settings: Any, threads: int | None = None) -> Runner: ...


def no_settings(spec: BuildSpec) -> None:
    return None


def any_batch(spec: BuildSpec) -> UsageError | None:
    return None


def qdq_route(spec: BuildSpec) -> PrecisionRoute:
    return PrecisionRoute()


def plain_fp16(spec: BuildSpec, cpu_flags: Callable[[], set[str]]) -> tuple[str, str | None, str | None]:
    return "fp16", None, None


@dataclass(frozen=True)
class TargetKind:
    """A target as the pipeline sees it, declared beside its backend (`TARGET` in backends/<name>.py) and listed in
    edgedeploy.backends.TARGETS: nothing outside backends/ compares target names.

    - `backend`: the Backend class (build, load → runner; its SDK imported inside its methods);
    - `settings`: the spec section its build/load take (None: none);
    - `precision_route`: how the precision stage makes fp16 / int8 for it (edgedeploy.precision.stage);
    - `builds_from_deploy_graph`: the backend picks deploy.onnx / deploy.fp16.onnx / the Q/DQ graph itself (TensorRT:
      its route depends on its version), else it builds the precision stage's output;
    - `float_latency_reference`: an int8 artifact is timed interleaved with the float graph on the same backend (no
      where that takes a second engine build);
    - `static_batch_refusal`: why `--static-batch` does not apply (None: it does; nor then a batch-1 copy);
    - `batch1_copy_by_default`: `batch1_artifact: auto` writes a static batch-1 copy beside a dynamic artifact (where
      a static shape is measurably faster at batch 1: OpenVINO);
    - `fp16_candidate`: `--precision auto`'s fp16 candidate on this machine: (name, why skipped or None, inference
      precision hint or None), given a function that reads the CPU's flags; `with_hint` applies such a hint;
    - `on_device`: a build from a bundle on the device, given the device's cache folder and the bundle's timing
      cache (or None): the spec with the device's own caches (TensorRT: its timing cache, seeded from the bundle's);
      None leaves the spec as the bundle has it.
    """

    name: str
    backend: Callable[[], Backend]
    settings: Callable[[BuildSpec], Any] = no_settings
    precision_route: Callable[[BuildSpec], PrecisionRoute] = qdq_route
    builds_from_deploy_graph: bool = False
    float_latency_reference: bool = True
    static_batch_refusal: Callable[[BuildSpec], UsageError | None] = any_batch
    batch1_copy_by_default: bool = False
    fp16_candidate: Callable[[BuildSpec, Callable[[], set[str]]], tuple[str, str | None, str | None]] = plain_fp16
    with_hint: Callable[[BuildSpec, str], BuildSpec] | None = None  # the spec with an inference precision hint
    on_device: Callable[[BuildSpec, Path, Path | None], BuildSpec] | None = None

