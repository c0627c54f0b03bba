"""A bundle's manifest (bundle.json) and the check that a bundle is exactly what was made.

    BUNDLE/bundle.json            schema, versions, precisions, the graph's I/O, and the sha256 and size of every
                                  other file; the sha256 of bundle.json itself names the bundle
    BUNDLE/spec.json              the build spec with its paths pointing into the bundle
    BUNDLE/deploy.onnx            the optimized graph; deploy.fp16.onnx and deploy.int8.qdq.onnx where made
    BUNDLE/reference.npz          validation inputs, reference outputs and labels
    BUNDLE/calibration.npz        the calibration samples, as model inputs in the order used (int8 bundles)
    BUNDLE/optimize.json          the verification record of every graph pass

Opening a bundle checks every file against bundle.json before anything reads it: a missing, changed or extra file
(or a symbolic link, which could point anywhere) is refused with one line naming it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedeploy import fileio
from edgedeploy.config import BuildSpec, load_spec
from edgedeploy.errors import EdgeDeployError, UsageError

SCHEMA = "edgedeploy.bundle/1"
MANIFEST = "bundle.json"
_MAX_MANIFEST_BYTES = 16 << 20  # it came over the network: a file table, never this big
SPEC = "spec.json"
VARIANTS = {"fp32": "deploy.onnx", "fp16": "deploy.fp16.onnx", "int8": "deploy.int8.qdq.onnx"}
CALIBRATION = "calibration.npz"


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]
    spec: BuildSpec  # paths resolved into `path`
    sha256: str  # of bundle.json: names this bundle

    @property
    def precisions(self) -> list[str]:
        return list(self.manifest["precisions"])


def is_bundle(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, size}} of every file under `folder` except bundle.json."""
    return {rel: {"sha256": fileio.sha256_file(folder / rel), "size": (folder / rel).stat().st_size}
            for rel in _listing(folder)}


def _listing(folder: Path) -> list[str]:
    out = []
    for parent, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(parent) / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                raise _refused(folder, f"{rel} is a symbolic link (a bundle holds plain files only)")
            if path.is_file() and rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def _refused(folder: Path, why: str) -> EdgeDeployError:
    return EdgeDeployError(f"bundle refused: {why}", where=str(folder),
                           fix="copy the bundle again, or make it again with `edgedeploy bundle`")


def _shape_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the fields a device reads from bundle.json (a file that came over the network), if anything."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
            for v in files.values()):
        return "has no valid file table (files: {path: {sha256, size}})"
    precisions, default = manifest.get("precisions"), manifest.get("default")
    if not isinstance(precisions, list) or not precisions or not all(p in VARIANTS for p in precisions):
        return f"has no valid precision list (precisions: some of {', '.join(VARIANTS)})"
    if not isinstance(default, dict) or not isinstance(default.get("target"), str) or \
            default.get("precision") not in precisions:
        return "has no valid default (default: {target, precision})"
    return None


def read_manifest(path: str | os.PathLike) -> tuple[dict[str, Any], bytes]:
    """bundle.json, parsed and its shape checked (schema, file table, precisions, default), with its bytes; the files
    it lists are not checked here (open_bundle does)."""
    folder = Path(path)
    if not is_bundle(folder):
        raise UsageError(f"not a bundle (no {MANIFEST})", where=str(folder),
                         fix="pass the folder `edgedeploy bundle --out` wrote")
    raw = fileio.read_input(folder / MANIFEST, MANIFEST, max_bytes=_MAX_MANIFEST_BYTES,
                            fix="copy the bundle again, or make it again with `edgedeploy bundle`")
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise _refused(folder, f"{MANIFEST} is not JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        schema = manifest.get("schema") if isinstance(manifest, dict) else None
        raise _refused(folder, f"{MANIFEST} has schema {schema!r}, this edgedeploy reads {SCHEMA}")
    problem = _shape_problem(manifest)
    if problem:
        raise _refused(folder, f"{MANIFEST} {problem}")
    return manifest, raw


def open_bundle(path: str | os.PathLike) -> Bundle:
    """Read and check a bundle: bundle.json, then every file's size and sha256 against it, before any is used."""
    folder = Path(path)
    manifest, raw = read_manifest(folder)
    recorded = manifest["files"]
    present = _listing(folder)
    for rel in sorted(recorded):
        if rel not in present:
            raise _refused(folder, f"{rel} is missing")
    for rel in present:
        if rel not in recorded:
            raise _refused(folder, f"{rel} is not listed in {MANIFEST} (added after the bundle was made)")
        size = (folder / rel).stat().st_size
        if size != recorded[rel]["size"] or fileio.sha256_file(folder / rel) != recorded[rel]["sha256"]:
            raise _refused(folder, f"{rel} does not match its sha256 in {MANIFEST} (changed after the bundle was made)")
    return Bundle(folder, manifest, load_spec(folder / SPEC), fileio.sha256_bytes(raw))


__all__ = ["Bundle", "open_bundle", "read_manifest", "is_bundle", "file_table", "SCHEMA", "MANIFEST", "SPEC", "VARIANTS",
           "CALIBRATION"]
