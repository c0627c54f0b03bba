"""The sidecar manifest written next to every TensorRT plan (`model.plan.json`), and the compatibility check that
runs BEFORE a plan is deserialized. No TensorRT import: `edgedeploy inspect` and the check work on any machine.

A serialized engine runs only where it was built for: the same TensorRT version (unless built version-compatible)
and the same GPU compute capability (unless built hardware-compatible). TensorRT itself offers no preflight check
and fails deep inside deserialization, so edgedeploy records what a plan needs and checks it first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from edgedeploy import __version__, fileio
from edgedeploy.backends.trt_plan import manifest_path_for, parse_version
from edgedeploy.errors import EdgeDeployError, UsageError

MANIFEST_SCHEMA = "edgedeploy.trt-manifest/1"
MAX_MANIFEST_BYTES = 16 << 20  # a manifest is a few kB; anything this large is not one
# TensorRT's support matrix: version-compatible engines run on later runtimes of the same major version, and
# across majors only TensorRT 8 → 10 and TensorRT 10 → 11.
_CROSS_MAJOR = {(8, 10), (10, 11)}
_REBUILD = "rebuild the engine on this machine (edgedeploy build ... --target trt); TensorRT plans are built on the device"


@dataclass
class PlanCompatibility:
    ok: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def format_cc(cc: Any) -> str | None:
    """(8, 7) / "8.7" / "sm_87" / 87 → "8.7"."""
    if cc is None:
        return None
    if isinstance(cc, (tuple, list)):
        return f"{int(cc[0])}.{int(cc[1])}"
    text = str(cc).strip().lower().removeprefix("sm_").removeprefix("sm")
    if "." in text:
        major, minor = text.split(".", 1)
        return f"{int(major)}.{int(minor)}"
    if text.isdigit() and len(text) >= 2:
        return f"{int(text[:-1])}.{int(text[-1])}"
    raise UsageError(f"cannot read the compute capability {cc!r}", fix="write it like 8.7")


def _cc_tuple(cc: Any) -> tuple[int, int] | None:
    text = format_cc(cc)
    if text is None:
        return None
    major, minor = text.split(".")
    return int(major), int(minor)


def _same_version(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    n = max(3, min(len(a), len(b)))
    pad = lambda v: v + (0,) * (n - len(v))  # noqa: E731
    return pad(a)[:n] == pad(b)[:n]


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return a + (0,) * max(0, len(b) - len(a))


def check_plan_compatible(manifest: Mapping[str, Any], runtime_trt_version: str | None,
                          gpu_cc: Any) -> PlanCompatibility:
    """Whether a plan described by `manifest` can run with TensorRT `runtime_trt_version` on a GPU of compute
    capability `gpu_cc`, honouring the plan's hardware- and version-compatibility modes. Pure; None skips a check."""
    problems: list[str] = []
    notes: list[str] = []
    trt = manifest.get("tensorrt", {})
    compat = manifest.get("compatibility", {})
    device = manifest.get("device", {})
    built_version = trt.get("version")
    version_compatible = bool(compat.get("version_compatible"))
    hardware = compat.get("hardware", "none")

    built, run = parse_version(built_version), parse_version(runtime_trt_version)
    if built is None:
        problems.append("the manifest does not say which TensorRT version built the plan")
    elif run is None:
        notes.append("TensorRT version not checked (no TensorRT runtime here)")
    elif not version_compatible:
        if not _same_version(built, run):
            problems.append(f"the plan was built with TensorRT {built_version} and this machine has TensorRT "
                            f"{runtime_trt_version}; a plan runs only on the TensorRT version that built it "
                            f"(unless built with tensorrt.version_compatible)")
    else:
        if _padded(run, built) < _padded(built, run) and not _same_version(built, run):
            problems.append(f"the version-compatible plan was built with TensorRT {built_version}; it runs on that "
                            f"version or later, not on {runtime_trt_version}")
        elif run[0] != built[0] and (built[0], run[0]) not in _CROSS_MAJOR:
            problems.append(f"a version-compatible TensorRT {built[0]} plan cannot run on TensorRT {run[0]} "
                            f"(supported across majors: 8 → 10 and 10 → 11)")
        else:
            notes.append(f"version-compatible plan (built with {built_version}) on TensorRT {runtime_trt_version}")

    built_cc = _cc_tuple(manifest.get("gpu", {}).get("compute_capability"))
    run_cc = _cc_tuple(gpu_cc)
    where = f"compute capability {format_cc(run_cc)}" if run_cc else ""
    if built_cc is None:
        problems.append("the manifest does not say which GPU (compute capability) the plan was built for")
    elif run_cc is None:
        notes.append("GPU not checked (no CUDA device here)")
    elif device.get("type") == "DLA":
        if run_cc != built_cc:
            problems.append(f"the DLA plan was built on a device with compute capability {format_cc(built_cc)}; "
                            f"this one has {format_cc(run_cc)}")
        notes.append(f"DLA plan: needs DLA core {device.get('dla_core')} on this device")
    elif hardware == "ampere_plus":
        if run_cc < (8, 0):
            problems.append(f"the plan is hardware-compatible with Ampere and newer GPUs (compute capability 8.0+); "
                            f"this GPU has {format_cc(run_cc)}")
    elif hardware in ("none", "same_compute_capability"):
        if run_cc != built_cc:
            mode = "" if hardware == "none" else " (hardware compatibility: same compute capability)"
            problems.append(f"the plan was built for compute capability {format_cc(built_cc)}{mode}; this GPU has "
                            f"{format_cc(run_cc)}")
    else:
        problems.append(f"unknown hardware compatibility mode {hardware!r} in the manifest")
    if run_cc and not problems and hardware == "none" and where:
        notes.append(f"same {where} as the build GPU ({manifest.get('gpu', {}).get('name', 'unknown')})")
    return PlanCompatibility(ok=not problems, problems=problems, notes=notes)


def ensure_plan_compatible(manifest: Mapping[str, Any], runtime_trt_version: str | None, gpu_cc: Any,
                           where: str | Path | None = None) -> PlanCompatibility:
    """check_plan_compatible, raising one EdgeDeployError (with every problem) when the plan cannot run here."""
    result = check_plan_compatible(manifest, runtime_trt_version, gpu_cc)
    if not result.ok:
        raise EdgeDeployError("; ".join(result.problems), where=str(where) if where else None, fix=_REBUILD)
    return result


# ------------------------------------------------------------------------------------------------ reading/writing

def build_manifest(*, plan_description: Mapping[str, Any], plan_path: Path, onnx_path: Path,
                   trt_version: str, gpu: Mapping[str, Any], platform: Mapping[str, Any],
                   io_tensors: Sequence[Mapping[str, Any]], gpu_fallback_layers: Sequence[Mapping[str, Any]] = (),
                   build_seconds: float | None = None, calibration: Mapping[str, Any] | None = None,
                   engine_layers: int | None = None) -> dict[str, Any]:
    """The manifest for a plan that was just written (pure: every measured fact is passed in)."""
    plan_path, onnx_path = Path(plan_path), Path(onnx_path)
    d = plan_description
    return {
        "schema": MANIFEST_SCHEMA,
        "edgedeploy": __version__,
        "plan": plan_path.name,
        "plan_sha256": fileio.sha256_file(plan_path),
        "plan_bytes": plan_path.stat().st_size,
        "onnx": onnx_path.name,
        "onnx_sha256": fileio.sha256_file(onnx_path),
        "precision": d["precision"],
        "route": d["onnx_role"],
        "tensorrt": {"version": trt_version, "major": parse_version(trt_version)[0]},
        "gpu": {"name": gpu.get("name"), "compute_capability": format_cc(gpu.get("compute_capability")),
                **{k: v for k, v in gpu.items() if k not in ("name", "compute_capability")}},
        "platform": dict(platform),
        "compatibility": {"hardware": d["hardware_compatibility"], "version_compatible": d["version_compatible"]},
        "device": {"type": d["device"], "dla_core": d["dla_core"], "gpu_fallback": d["gpu_fallback"],
                   "gpu_fallback_layers": [dict(x) for x in gpu_fallback_layers]},
        "flags": {"strongly_typed": d["strongly_typed"], "network": d["network_flags"],
                  "builder": d["builder_flags"], "cleared": d["cleared_flags"], "parser": d["parser_flags"]},
        "io_tensors": [dict(t) for t in io_tensors],
        "build": {"seconds": build_seconds, "builder_optimization_level": d["builder_optimization_level"],
                  "workspace_bytes": d["workspace_bytes"], "timing_cache": d["timing_cache"],
                  "engine_layers": engine_layers},
        "calibration": dict(calibration) if calibration else None,
        "plan_description": dict(d),
    }


def locate_manifest(path: str | Path) -> Path:
    """The manifest for a plan file, a manifest file, or a build/bundle folder holding exactly one plan."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("*.plan.json"))
        if not found:
            raise UsageError("no TensorRT plan manifest (*.plan.json) in this folder", where=str(path),
                             fix="give a folder built with --target trt, or the plan file itself")
        if len(found) > 1:
            names = ", ".join(str(p.relative_to(path)) for p in found)
            raise UsageError(f"{len(found)} TensorRT plans in this folder ({names})", where=str(path),
                             fix="name the plan to inspect")
        return found[0]
    if path.name.endswith(".plan.json") or (path.suffix == ".json" and path.is_file()):
        if not path.is_file():
            raise UsageError("manifest not found", where=str(path))
        return path
    if not path.exists():
        raise UsageError("no such plan, manifest or folder", where=str(path))
    manifest = manifest_path_for(path)
    if not manifest.is_file():
        raise UsageError(f"the plan has no manifest ({manifest.name}), so what it was built for is unknown",
                         where=str(path), fix="plans built outside edgedeploy have none: rebuild with edgedeploy")
    return manifest


# -------------------------------------------------------------------------------------------- manifest model
# A manifest is read from a file anyone may have edited: every field edgedeploy reads is typed (strictly: "10" is no
# int, "yes" no bool), the plan is a file name next to the manifest, and numbers are finite.

def _version(text: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+){1,4}", text):
        raise ValueError("must look like 10.3.0.30")
    return text


def _cc(text: str) -> str:
    if not re.fullmatch(r"\d+\.\d+", text):
        raise ValueError("must look like 8.7")
    return text


def _file_name(text: str) -> str:
    if not text or text in (".", "..") or any(c in text for c in "/\\\0"):
        raise ValueError("must be a file name next to the manifest")
    return text


def _sha256(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError("must be 64 hex digits")
    return text


Version = Annotated[str, AfterValidator(_version)]
Cc = Annotated[str, AfterValidator(_cc)]
FileName = Annotated[str, AfterValidator(_file_name)]
Sha256 = Annotated[str, AfterValidator(_sha256)]
Shape = list[int]


class _Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class _TensorRT(_Part):
    version: Version
    major: int | None = None


class _Gpu(_Part):
    name: str | None = None
    compute_capability: Cc


class _Compatibility(_Part):
    hardware: Literal["none", "ampere_plus", "same_compute_capability"]
    version_compatible: bool


class _FallbackLayer(_Part):
    name: str
    type: str


class _Device(_Part):
    type: Literal["GPU", "DLA"]
    dla_core: int | None = Field(None, ge=0)
    gpu_fallback: bool = False
    gpu_fallback_layers: list[_FallbackLayer] = Field(default_factory=list)


class _Flags(_Part):
    strongly_typed: bool
    builder: list[str] = Field(default_factory=list)
    cleared: list[str] = Field(default_factory=list)
    network: list[str] = Field(default_factory=list)
    parser: list[str] = Field(default_factory=list)


class _Profile(_Part):
    min: Shape
    opt: Shape
    max: Shape


class _IoTensor(_Part):
    name: str
    mode: Literal["input", "output"]
    dtype: str
    shape: Shape
    profile: _Profile | None = None


class _Platform(_Part):
    machine: str | None = None
    jetson: bool = False


class _Build(_Part):
    seconds: float | None = None
    builder_optimization_level: int | None = None
    workspace_bytes: int | None = None
    timing_cache: str | None = None
    engine_layers: int | None = None


class PlanManifest(_Part):
    """The typed manifest (`model.plan.json`); `read_manifest` validates every file against it."""

    schema_: Literal["edgedeploy.trt-manifest/1"] = Field(alias="schema")
    edgedeploy: str | None = None
    plan: FileName
    plan_sha256: Sha256
    plan_bytes: int = Field(ge=0)
    onnx: str
    onnx_sha256: str
    precision: Literal["fp32", "fp16", "int8"]
    route: str
    tensorrt: _TensorRT
    gpu: _Gpu
    platform: _Platform = Field(default_factory=_Platform)
    compatibility: _Compatibility
    device: _Device
    flags: _Flags
    io_tensors: list[_IoTensor]
    build: _Build = Field(default_factory=_Build)
    calibration: dict[str, Any] | None = None
    plan_description: dict[str, Any] = Field(default_factory=dict)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def read_manifest(path: str | Path) -> tuple[dict[str, Any], Path]:
    """(manifest, its path) for a plan, a manifest or a folder: parsed and validated against `PlanManifest`, so a
    malformed file is one UsageError naming it and the first problems, never another exception."""
    mpath = locate_manifest(path)
    fix = ("the manifest is written by `edgedeploy build --target trt` next to the plan; rebuild the plan rather "
           "than edit it")
    try:
        if mpath.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"larger than {MAX_MANIFEST_BYTES >> 20} MiB")
        data = json.loads(mpath.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (OSError, ValueError, RecursionError) as e:
        raise UsageError(f"unreadable manifest ({type(e).__name__}: {e})", where=str(mpath), fix=fix) from None
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
        raise UsageError(f"not an edgedeploy TensorRT manifest (schema {MANIFEST_SCHEMA!r} expected)",
                         where=str(mpath), fix=fix)
    try:
        manifest = PlanManifest.model_validate(data)
    except ValidationError as e:
        problems = [f"`{'.'.join(str(x) for x in err['loc'])}`: {err['msg']}" for err in e.errors()]
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UsageError(f"malformed manifest: {'; '.join(problems[:3])}{more}", where=str(mpath), fix=fix) from None
    return manifest.model_dump(mode="json", by_alias=True), mpath


def plan_file_problem(manifest: Mapping[str, Any], manifest_path: Path) -> str | None:
    """None when the plan next to the manifest is the one the manifest describes."""
    plan = Path(manifest_path).with_name(manifest.get("plan", ""))
    if not plan.is_file():
        return f"the plan file {plan.name} is missing next to its manifest"
    if fileio.sha256_file(plan) != manifest.get("plan_sha256"):
        return f"{plan.name} changed since its manifest was written (hash differs)"
    return None


def format_manifest(manifest: Mapping[str, Any]) -> str:
    """The manifest for people."""
    trt, gpu, compat, device = (manifest.get(k, {}) for k in ("tensorrt", "gpu", "compatibility", "device"))
    flags = manifest.get("flags", {})
    lines = [
        f"plan        {manifest.get('plan')} ({manifest.get('plan_bytes', 0) / 1e6:.2f} MB, "
        f"sha256 {str(manifest.get('plan_sha256'))[:16]}…)",
        f"built from  {manifest.get('onnx')} (sha256 {str(manifest.get('onnx_sha256'))[:16]}…): "
        f"{manifest.get('route')}",
        f"precision   {manifest.get('precision')}",
        f"TensorRT    {trt.get('version')}",
        f"GPU         {gpu.get('name')} (compute capability {gpu.get('compute_capability')})",
        f"platform    {manifest.get('platform', {}).get('machine')}"
        + (" (Jetson)" if manifest.get("platform", {}).get("jetson") else ""),
        f"compat      hardware {compat.get('hardware')}; version-compatible "
        f"{'yes' if compat.get('version_compatible') else 'no'}",
        f"network     {'strongly' if flags.get('strongly_typed') else 'weakly'} typed; builder flags "
        f"{', '.join(flags.get('builder', [])) or 'none'}"
        + (f"; cleared {', '.join(flags.get('cleared', []))}" if flags.get("cleared") else ""),
    ]
    if device.get("type") == "DLA":
        fallback = device.get("gpu_fallback_layers") or []
        lines.append(f"device      DLA core {device.get('dla_core')}, GPU fallback "
                     f"{'on' if device.get('gpu_fallback') else 'off'}; {len(fallback)} layer(s) on the GPU")
        lines += [f"              {x.get('name')} ({x.get('type')})" for x in fallback]
    else:
        lines.append("device      GPU")
    for t in manifest.get("io_tensors", []):
        prof = t.get("profile")
        rng = (f"; profile min {prof['min']} opt {prof['opt']} max {prof['max']}" if prof else "")
        lines.append(f"{t.get('mode', '?'):<11} {t.get('name')}: {t.get('dtype')} {t.get('shape')}{rng}")
    if manifest.get("calibration"):
        c = manifest["calibration"]
        lines.append(f"calibration {c.get('class')} cache {c.get('cache')} key {str(c.get('key'))[:16]}…")
    return "\n".join(lines)


def inspect(path: str | Path, *, runtime_trt_version: str | None = None, gpu_cc: Any = None,
            runtime_note: str | None = None, as_json: bool = False) -> tuple[str, PlanCompatibility, dict]:
    """Text for `edgedeploy inspect`: the manifest, and whether this machine can run the plan."""
    manifest, mpath = read_manifest(path)
    result = check_plan_compatible(manifest, runtime_trt_version, gpu_cc)
    problem = plan_file_problem(manifest, mpath)
    if problem:
        result.problems.insert(0, problem)
        result.ok = False
    if as_json:
        return json.dumps(manifest, indent=2), result, manifest
    lines = [f"manifest    {mpath}", format_manifest(manifest)]
    if runtime_trt_version is None and gpu_cc is None:
        lines.append(f"this machine: not checked ({runtime_note or 'no TensorRT runtime here'})")
    else:
        if not result.ok:
            verdict = "cannot run this plan"
        elif runtime_trt_version is not None and gpu_cc is not None:
            verdict = "can run this plan"
        else:
            verdict = f"no problem found, partly checked ({runtime_note or 'no GPU here'})"
        lines.append(f"this machine: TensorRT {runtime_trt_version or '?'}, compute capability "
                     f"{format_cc(gpu_cc) or '?'}: {verdict}")
    lines += [f"  ✗ {p}" for p in result.problems]
    lines += [f"  · {n}" for n in result.notes]
    return "\n".join(lines), result, manifest


__all__ = ["MANIFEST_SCHEMA", "PlanCompatibility", "PlanManifest", "build_manifest", "check_plan_compatible",
           "ensure_plan_compatible", "format_cc", "format_manifest", "inspect", "locate_manifest",
           "plan_file_problem", "read_manifest"]
