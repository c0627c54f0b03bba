"""Targets by name: `TARGETS` maps each `--target` to its TargetKind (edgedeploy.backends.base), declared beside its
backend. Adding a target is one module declaring `TARGET` and one line here (docs/architecture.md). Importing this
package imports no SDK: each backend imports its own inside its methods."""

from __future__ import annotations

from typing import Any

from edgedeploy.backends import onnxruntime, openvino, trt_target
from edgedeploy.backends.base import Backend, BuildResult, Runner, TargetKind
from edgedeploy.config import BuildSpec
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.precision.stage import PrecisionRoute

TARGETS: dict[str, TargetKind] = {t.name: t for t in (
    openvino.TARGET,
    onnxruntime.TARGET,
    trt_target.TARGET,
)}


def target_kind(name: str) -> TargetKind:
    """The registry entry of a target name; an unknown one is one clear line."""
    if name not in TARGETS:
        raise UsageError(f"unknown target {name!r}", fix=f"use one of: {', '.join(TARGETS)}")
    return TARGETS[name]


def get_backend(name: str) -> Backend:
    """The backend for a target name, with its SDK checked; a missing SDK is one clear line."""
    backend = target_kind(name).backend()
    if (hint := backend.missing()) is not None:
        raise EdgeDeployError(hint)
    return backend


def backend_settings(spec: BuildSpec) -> Any:
    """The spec section the target's build and load take (None for a target without one)."""
    return target_kind(spec.target).settings(spec)


def precision_route(spec: BuildSpec) -> PrecisionRoute:
    """How the precision stage makes spec.precision for spec.target."""
    return target_kind(spec.target).precision_route(spec)


__all__ = ["Backend", "BuildResult", "Runner", "TargetKind", "TARGETS", "backend_settings", "get_backend",
           "precision_route", "target_kind"]
