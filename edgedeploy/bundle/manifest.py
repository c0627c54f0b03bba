"""A bundle's manifest (bundle.json) and the check that a bundle is exactly what was made.

    BUNDLE/bundle.json            schema, versions, precisions, the graph's I/O, and the sha256 and size of every
                                  other file; the sha256 of bundle.json itself names the bundle
    BUNDLE/spec.json              the build spec with its paths pointing into the bundle
    BUNDLE/deploy.onnx            the optimized graph; deploy.fp16.onnx and deploy.int8.qdq.onnx where made
    BUNDLE/reference.npz          validation inputs, reference outputs and labels
    BUNDLE/calibration.npz        the calibration samples, as model inputs in the order used (int8 bundles)
    BUNDLE/optimize.json          the verification record of every graph pass
    BUNDLE/tensorrt.timing.cache  a TensorRT timing cache, bytes (when the spec's tensorrt.timing_cache existed):
                                  a device build combines it into its own cache (bundle.json: "tensorrt")

Opening a bundle checks every file against bundle.json before anything reads it: a missing, changed or extra file
(or a symbolic link, which could point anywhere) is refused with one line naming it.

A bundle is data, never code or a pointer elsewhere. bundle.json's hashes only show that the files are the ones it
lists: anyone who can edit a bundle can rehash it (bundle.json.sig, signature.py, shows who made it). So spec.json is
read through the bundle schema (BundleSpec): the build spec without anything that names code (`model.factory`,
`calibration.function`, `trust_code`) or a path of the device's own (`calibration.cache_dir`, TensorRT's timing and
calibrator caches, `validation.data`, a checkpoint), and with its only paths fixed to the bundle's own files
(`model.onnx: deploy.onnx`, `calibration.data: calibration.npz`); anything else is refused with one line naming the
field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from edgedeploy import fileio
from edgedeploy.bundle.signature import SIGNATURE, verify
from edgedeploy.config import BuildSpec, CalibrationSpec, ModelSource, TensorRTSettings, ValidationSettings, load_spec
from edgedeploy.errors import EdgeDeployError, UsageError

SCHEMA = "edgedeploy.bundle/1"
MANIFEST = "bundle.json"
_MAX_MANIFEST_BYTES = 16 << 20  # it came over the network: a file table, never this big
SPEC = "spec.json"
VARIANTS = {"fp32": "deploy.onnx", "fp16": "deploy.fp16.onnx", "int8": "deploy.int8.qdq.onnx"}
CALIBRATION = "calibration.npz"
TIMING_CACHE = "tensorrt.timing.cache"
_MAX_SPEC_BYTES = 4 << 20


def _narrowed(base: type[BaseModel], **fields: Any) -> type[BaseModel]:
    """`base`'s fields (extra keys forbidden), with `fields` replacing some: `None` for a field a bundle may only
    leave empty, a Literal for a path that must be one of the bundle's files."""
    kept = {name: (f.annotation, f) for name, f in base.model_fields.items() if name not in fields}
    return create_model(f"Bundle{base.__name__}", __config__=ConfigDict(extra="forbid"), **{**kept, **fields})


_EMPTY = (None, None)
BundleSpec = _narrowed(
    BuildSpec,
    model=(_narrowed(ModelSource, factory=_EMPTY, checkpoint=_EMPTY, kwargs=(dict[str, None], {}),
                     onnx=(Literal["deploy.onnx"], ...)), ...),
    validation=(_narrowed(ValidationSettings, data=_EMPTY), ...),
    calibration=(_narrowed(CalibrationSpec, function=_EMPTY, cache_dir=_EMPTY,
                           data=(Literal["calibration.npz"] | None, None)), ...),
    tensorrt=(_narrowed(TensorRTSettings, timing_cache=_EMPTY, timing_cache_seed=_EMPTY, calibration_cache=_EMPTY,
                        calibration_data=(Literal["calibration.npz"] | None, None)), ...),
)
BundleSpec.__doc__ = "spec.json as a device reads it: data only, its paths the bundle's own files (module docstring)."


def _check_spec(folder: Path) -> None:
    """spec.json through the bundle schema: one line naming the first field a bundle may not hold."""
    raw = fileio.read_input(folder / SPEC, SPEC, max_bytes=_MAX_SPEC_BYTES,
                            fix="copy the bundle again, or make it again with `edgedeploy bundle`")
    try:
        BundleSpec.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        field = field if field.isprintable() else repr(field)[1:-1]
        if first["type"] in ("extra_forbidden", "none_required"):
            why = "is not allowed in a bundle (a bundle is data: it names no code and no path outside itself)"
        elif first["type"] == "literal_error":
            why = f"must name the bundle's own file ({first['msg'].removeprefix('Input should be ')})"
        else:
            why = f"is invalid ({first['msg']})"
        raise _refused(folder, f"{SPEC}: `{field}` {why}") from None


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]
    spec: BuildSpec  # paths resolved into `path`
    sha256: str  # of bundle.json: names this bundle
    signer: str | None = None  # the principal whose signature was checked (None: not checked)

    @property
    def precisions(self) -> list[str]:
        return list(self.manifest["precisions"])

    @property
    def timing_cache(self) -> Path | None:
        """The bundle's TensorRT timing cache (a file checked against bundle.json), or None."""
        return self.path / TIMING_CACHE if "tensorrt" in self.manifest else None


def is_bundle(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, size}} of every file under `folder` except bundle.json (and its signature)."""
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
            if path.is_file() and rel not in (MANIFEST, SIGNATURE):
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
    if "tensorrt" in manifest and (manifest["tensorrt"] != {"timing_cache": TIMING_CACHE} or TIMING_CACHE not in files):
        return f"names a TensorRT timing cache other than its own listed {TIMING_CACHE} (tensorrt: {{timing_cache}})"
    return None


def read_manifest(path: str | os.PathLike, signers: Path | None = None,
                  require_signature: bool = False) -> tuple[dict[str, Any], bytes, str | None]:
    """bundle.json, parsed and its shape checked (schema, file table, precisions, default), with its bytes and the
    signer: with `signers` (an allowed_signers file) its signature is checked first, on the bytes then parsed;
    `require_signature` without `signers` is a usage error. The files it lists are not checked here (open_bundle
    does)."""
    folder = Path(path)
    if not is_bundle(folder):
        raise UsageError(f"not a bundle (no {MANIFEST})", where=str(folder),
                         fix="pass the folder `edgedeploy bundle --out` wrote")
    if require_signature and signers is None:
        raise UsageError("--require-signature needs an allowed signers file to check the signature against",
                         where=str(folder), fix="pass --allowed-signers FILE or set EDGEDEPLOY_ALLOWED_SIGNERS")
    raw = fileio.read_input(folder / MANIFEST, MANIFEST, max_bytes=_MAX_MANIFEST_BYTES,
                            fix="copy the bundle again, or make it again with `edgedeploy bundle`")
    signer = verify(folder, raw, signers) if signers is not None else None
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise _refused(folder, f"{MANIFEST} is not JSON ({reason})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        schema = manifest.get("schema") if isinstance(manifest, dict) else None
        raise _refused(folder, f"{MANIFEST} has schema {schema!r}, this edgedeploy reads {SCHEMA}")
    problem = _shape_problem(manifest)
    if problem:
        raise _refused(folder, f"{MANIFEST} {problem}")
    return manifest, raw, signer


def open_bundle(path: str | os.PathLike, signers: Path | None = None, require_signature: bool = False) -> Bundle:
    """Read and check a bundle: its signature (with `signers`), bundle.json, then every file's size and sha256
    against it and spec.json against the bundle schema, before any is used."""
    folder = Path(path)
    manifest, raw, signer = read_manifest(folder, signers, require_signature)
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
    _check_spec(folder)
    return Bundle(folder, manifest, load_spec(folder / SPEC), fileio.sha256_bytes(raw), signer)


__all__ = ["Bundle", "BundleSpec", "open_bundle", "read_manifest", "is_bundle", "file_table", "SCHEMA", "MANIFEST", "SPEC", "VARIANTS",
           "CALIBRATION", "TIMING_CACHE"]
