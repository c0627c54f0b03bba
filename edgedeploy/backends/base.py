"""The one small protocol every backend implements; SDKs are imported only inside the methods that need them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


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
