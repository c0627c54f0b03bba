"""Installed versions of the libraries a build depends on: recorded in manifests and reports, and part of every
cache key (a changed library re-runs what it computed)."""

from __future__ import annotations

import importlib.metadata

LIBRARIES = ("torch", "onnx", "onnxsim", "onnxslim", "onnxruntime", "openvino", "nncf", "numpy", "tensorrt")


def package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Installed version of each distribution (None: not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def library_versions() -> dict[str, str | None]:
    """The versions of every library a build's figures depend on."""
    return package_versions(LIBRARIES)


__all__ = ["LIBRARIES", "package_versions", "library_versions"]
