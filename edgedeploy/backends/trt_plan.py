"""The TensorRT build plan: every decision about an engine build, made by plain functions without TensorRT.

`plan_build(inputs, settings, precision, out_dir, ...)` turns the deploy ONNX's inputs and the config's `tensorrt:`
section into a `TrtBuildPlan`: which ONNX file is parsed (the precision route differs between TensorRT 10 and 11),
network creation flags, builder flags, the optimization profile, memory, timing cache, DLA, hardware/version
compatibility, the calibrator (TensorRT 10 only) and where the plan and its manifest go. The thin layer in
`tensorrt.py` applies a plan to real TensorRT objects; everything here is tested on machines without a GPU.

Precision routes (TensorRT 11 removed BuilderFlag.FP16/INT8 and the IInt8 calibrators; every network is strongly
typed there, so precision must be in the graph):

| precision | TensorRT 10 (JetPack 6)                                 | TensorRT 11 (JetPack 7.2)                   |
| --------- | ------------------------------------------------------- | ------------------------------------------- |
| fp32      | deploy.onnx, TF32 cleared                               | deploy.onnx, TF32 cleared                   |
| fp16      | deploy.onnx + BuilderFlag.FP16                          | deploy.fp16.onnx (fp16-cast graph)          |
| int8      | deploy.int8.qdq.onnx, strongly typed (GPU) or INT8+FP16 | deploy.int8.qdq.onnx                        |
|           | flags (DLA); or deploy.onnx + implicit calibrator       | (the calibrator route is refused)           |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedeploy.config import TensorRTSettings
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.precision import cache as cache_keys
from edgedeploy.shapes import dim_of

PLAN_SCHEMA = "edgedeploy.trt-plan/1"
PLAN_FILE = "model.plan"
DEPLOY_ONNX = {"fp32": "deploy.onnx", "fp16": "deploy.fp16.onnx", "int8": "deploy.int8.qdq.onnx"}
SUPPORTED_MAJORS = (8, 10, 11)
_FIRST_TRT8 = (8, 5)  # the I/O tensor API (set_input_shape, set_tensor_address, execute_async_v3) arrives in 8.5
_TRT8_FEATURES = (8, 6)  # builder optimization level, hardware and version compatibility: 8.6
DEFAULT_BATCH = (1, 1, 8)  # min / opt / max of an unprofiled leading dimension: edge latency at 1, validation at 8
_PRECISIONS = ("fp32", "fp16", "int8")
_DLA_LAST_TRT10 = (10, 7)  # TensorRT docs: "TensorRT 10.7 was the last 10.x release that supported DLA"
_DLA_FIRST_TRT11 = (11, 4, 1)  # DLA returns in 11.4.1, on Jetson AGX Orin with JetPack 7.2.2+
_SAME_CC_FIRST_TRT10 = (10, 9)  # HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY and trtexec's value appear in 10.9
_ADJUST_FOR_DLA_FIRST_TRT10 = (10, 16)  # OnnxParserFlag.ADJUST_FOR_DLA (and trtexec --adjustForDLA): 10.16 and 11.x


@dataclass(frozen=True)
class InputInfo:
    """One model input: a dimension is an int (static) or a name (dynamic)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    @property
    def dynamic(self) -> bool:
        return any(is_dynamic_dim(d) for d in self.shape)


def is_dynamic_dim(dim: int | str) -> bool:
    """Whether a dimension of an `InputInfo` shape is dynamic (given a profile) rather than fixed."""
    return isinstance(dim, str)


@dataclass(frozen=True)
class TrtProfile:
    """The optimization profile entry for one input (TensorRT's IOptimizationProfile.set_shape)."""

    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def static(self) -> bool:
        return self.min == self.opt == self.max

    def describe(self) -> str:
        fmt = lambda s: "x".join(map(str, s))  # noqa: E731
        if self.static:
            return f"{self.input}: {fmt(self.opt)} (static)"
        return f"{self.input}: min {fmt(self.min)}, opt {fmt(self.opt)}, max {fmt(self.max)}"


@dataclass(frozen=True)
class CalibrationPlan:
    """TensorRT 10's implicit INT8 calibrator and its cache (keyed like every calibration result)."""

    algorithm: str  # entropy2 | minmax
    trt_class: str  # IInt8EntropyCalibrator2 | IInt8MinMaxCalibrator
    data: Path | None
    cache: Path
    batch_size: int


@dataclass(frozen=True)
class TrtBuildPlan:
    trt_major: int
    trt_version: str | None  # the exact version when planned on the build machine; None for a dry run
    precision: str
    onnx_path: Path  # the file the ONNX parser reads
    onnx_role: str  # what that file is, in words
    strongly_typed: bool
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag members to set
    builder_flags: tuple[str, ...]  # BuilderFlag members to set
    cleared_flags: tuple[str, ...]  # BuilderFlag members to clear
    parser_flags: tuple[str, ...]  # OnnxParserFlag members to set
    profiles: tuple[TrtProfile, ...]
    workspace_bytes: int | None
    tactic_dram_bytes: int | None  # MemoryPoolType.TACTIC_DRAM (8.6+)
    builder_optimization_level: int | None  # None: TensorRT 8.5, which has no such setting
    timing_cache: Path | None
    device: str  # GPU | DLA
    dla_core: int | None
    gpu_fallback: bool
    hardware_compatibility: str  # none | ampere_plus | same_compute_capability
    version_compatible: bool
    calibration: CalibrationPlan | None
    plan_path: Path
    manifest_path: Path
    notes: tuple[str, ...] = field(default_factory=tuple)
    layer_precisions: tuple[tuple[str, str], ...] = ()  # (ONNX node, fp32 | fp16): per-layer precision constraints
    mark_all_outputs: bool = False  # every layer output a network output (`edgedeploy debug precision --target trt`)
    timing_cache_seed: Path | None = None  # a cache combined into timing_cache's before the build (a bundle's)

    def describe(self) -> dict[str, Any]:
        """Everything the plan decided, JSON-serializable (for --dry-run, manifests and reports)."""
        return {
            "schema": PLAN_SCHEMA,
            "tensorrt_major": self.trt_major,
            "tensorrt_version": self.trt_version,
            "precision": self.precision,
            "onnx": str(self.onnx_path),
            "onnx_role": self.onnx_role,
            "strongly_typed": self.strongly_typed,
            "network_flags": list(self.network_flags),
            "builder_flags": list(self.builder_flags),
            "cleared_flags": list(self.cleared_flags),
            "parser_flags": list(self.parser_flags),
            "profiles": [{"input": p.input, "min": list(p.min), "opt": list(p.opt), "max": list(p.max)}
                         for p in self.profiles],
            "workspace_bytes": self.workspace_bytes,
            "tactic_dram_bytes": self.tactic_dram_bytes,
            "builder_optimization_level": self.builder_optimization_level,
            "timing_cache": str(self.timing_cache) if self.timing_cache else None,
            "device": self.device,
            "dla_core": self.dla_core,
            "gpu_fallback": self.gpu_fallback,
            "hardware_compatibility": self.hardware_compatibility,
            "version_compatible": self.version_compatible,
            "calibration": None if self.calibration is None else {
                "algorithm": self.calibration.algorithm, "class": self.calibration.trt_class,
                "data": str(self.calibration.data) if self.calibration.data else None,
                "cache": str(self.calibration.cache), "batch_size": self.calibration.batch_size},
            "plan": str(self.plan_path),
            "manifest": str(self.manifest_path),
            "notes": list(self.notes),
            "layer_precisions": dict(self.layer_precisions),
            "mark_all_outputs": self.mark_all_outputs,
            "timing_cache_seed": str(self.timing_cache_seed) if self.timing_cache_seed else None,
        }

    def describe_text(self, relative_to: Path | None = None) -> str:
        """The plan for people: one aligned line per decision."""
        def rel(p: Path | None) -> str:
            if p is None:
                return "-"
            if relative_to is not None:
                try:
                    return str(Path(p).relative_to(relative_to))
                except ValueError:
                    pass
            return str(p)

        version = self.trt_version or f"{self.trt_major}.x"
        typing = "strongly typed" if self.strongly_typed else "weakly typed"
        net_flags = ", ".join(self.network_flags) or "none"
        flags = ", ".join(self.builder_flags) or "none"
        if self.cleared_flags:
            flags += f"; cleared {', '.join(self.cleared_flags)}"
        device = "GPU" if self.device == "GPU" else (
            f"DLA core {self.dla_core}, GPU fallback {'on' if self.gpu_fallback else 'off'}")
        workspace = f"{self.workspace_bytes // (1 << 20)} MiB" if self.workspace_bytes else "TensorRT default"
        level = "TensorRT's" if self.builder_optimization_level is None else self.builder_optimization_level
        if self.tactic_dram_bytes:
            workspace += f", tactic DRAM {self.tactic_dram_bytes // (1 << 20)} MiB"
        lines = [
            f"TensorRT {version} · {self.precision} → {rel(self.plan_path)}",
            f"  onnx        {rel(self.onnx_path)} ({self.onnx_role})",
            f"  network     {typing}; creation flags: {net_flags}",
            f"  builder     flags: {flags}; optimization level {level}; "
            f"workspace {workspace}",
            f"  parser      flags: {', '.join(self.parser_flags) or 'none'}",
        ]
        lines += [f"  profile     {p.describe()}" for p in self.profiles] or ["  profile     (all inputs static)"]
        lines += [
            f"  device      {device}",
            f"  compat      hardware {self.hardware_compatibility}; version-compatible "
            f"{'yes' if self.version_compatible else 'no'}",
            f"  cache       timing {rel(self.timing_cache) if self.timing_cache else 'in memory only'}"
            + (f", seeded from {rel(self.timing_cache_seed)}" if self.timing_cache_seed else ""),
        ]
        if self.calibration is not None:
            c = self.calibration
            lines.append(f"  calibrator  {c.trt_class}, batch {c.batch_size}, data {rel(c.data)}, cache {rel(c.cache)}")
        lines += [f"  layer       {node}: {p} (precision constraint)" for node, p in self.layer_precisions]
        if self.mark_all_outputs:
            lines.append("  outputs     every layer output marked as a network output (debug)")
        lines += [f"  note        {n}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- inputs

def inputs_from_spec(inputs: Iterable[Any]) -> list[InputInfo]:
    """Inputs from the config's `inputs:` (InputSpec objects or dicts with name/shape/dtype)."""
    out = []
    for spec in inputs:
        get = spec.get if isinstance(spec, Mapping) else lambda k, d=None, s=spec: getattr(s, k, d)
        out.append(InputInfo(get("name"), tuple(get("shape")), get("dtype", "float32") or "float32"))
    return out


def inputs_from_onnx(model: Any) -> list[InputInfo]:
    """Inputs of an ONNX model (a path or a ModelProto); a dimension without a name gets `<input>.<axis>`."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims: list[int | str] = []
        for axis, d in enumerate(tensor.shape.dim):  # -1, 0, "?" and absent are dynamic, each its own dimension
            dim = dim_of(d)
            dims.append(f"{value.name}.{axis}" if dim is None else dim)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "float32"
        out.append(InputInfo(value.name, tuple(dims), dtype))
    return out


# ------------------------------------------------------------------------------------------------------ versions

def parse_version(version: str | None) -> tuple[int, ...] | None:
    """'10.3.0.30' → (10, 3, 0, 30); None stays None."""
    if version is None:
        return None
    parts = []
    for piece in str(version).strip().split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise UsageError(f"cannot read the TensorRT version {version!r}")
    return tuple(parts)


def resolve_major(settings: TensorRTSettings, installed_version: str | None) -> int:
    """The major version to plan for: the override, else the installed TensorRT's."""
    if settings.plan_for_major is not None:
        return settings.plan_for_major
    parsed = parse_version(installed_version)
    if parsed is None:
        raise UsageError("no TensorRT version to plan for",
                         fix="install TensorRT, or set tensorrt.plan_for_major (10 or 11) for a dry run")
    if parsed[0] not in SUPPORTED_MAJORS or (parsed[0] == 8 and parsed[:2] < _FIRST_TRT8):
        raise UsageError(f"TensorRT {installed_version} is not supported (edgedeploy needs TensorRT's I/O tensor "
                         f"API, 8.5+)",
                         fix="use TensorRT 8.5 (JetPack 5.1.x), 8.6 (JetPack 6.0), 10.x (JetPack 6.1/6.2) or 11.x "
                             "(JetPack 7.2.2+)")
    return parsed[0]


# ---------------------------------------------------------------------------------------------------- profiles

def plan_profiles(inputs: Sequence[InputInfo], settings: TensorRTSettings,
                  default_batch: tuple[int, int, int] = DEFAULT_BATCH) -> tuple[tuple[TrtProfile, ...], list[str]]:
    """One optimization profile for the dynamic inputs, and notes about defaults that were used.

    `tensorrt.profiles` keys are input names (min/opt/max are full shapes) or dynamic dimension names (ints).
    A leading dynamic dimension without a profile gets `default_batch`; any other unprofiled dynamic
    dimension is an error, because no default fits an unknown height or sequence length.

    This is the one place profile shapes are derived (the builder, the manifest and every trtexec line take them
    from here); which dimensions count as dynamic is `InputInfo.dynamic` / `is_dynamic_dim`.
    """
    entries = dict(settings.profiles)
    input_names = {i.name for i in inputs}
    dim_names = {d for i in inputs for d in i.shape if isinstance(d, str)}
    for key, rng in entries.items():
        by_input = isinstance(rng.min, list)
        if key in input_names and not by_input:
            raise UsageError(f"`tensorrt.profiles.{key}` names an input, so min/opt/max must be full shapes",
                             fix=f"e.g. min: {_example_shape(inputs, key)}")
        if key not in input_names and key in dim_names and by_input:
            raise UsageError(f"`tensorrt.profiles.{key}` names a dynamic dimension, so min/opt/max must be ints")
        if key not in input_names and key not in dim_names:
            raise UsageError(f"`tensorrt.profiles.{key}`: no input or dynamic dimension is called {key!r}",
                             fix=f"inputs: {', '.join(sorted(input_names))}; dynamic dimensions: "
                                 f"{', '.join(sorted(dim_names)) or 'none'}")
    notes: list[str] = []
    defaulted: set[str] = set()
    profiles = []
    for info in inputs:
        if info.name in entries:
            rng = entries[info.name]
            shapes = [tuple(rng.min), tuple(rng.opt), tuple(rng.max)]
            for shape in shapes:
                if len(shape) != len(info.shape):
                    raise UsageError(f"`tensorrt.profiles.{info.name}`: shape {list(shape)} has rank {len(shape)}, "
                                     f"the input has rank {len(info.shape)} ({_fmt_dims(info.shape)})")
                for axis, (want, got) in enumerate(zip(info.shape, shape)):
                    if isinstance(want, int) and want != got:
                        raise UsageError(f"`tensorrt.profiles.{info.name}`: axis {axis} is static ({want}) "
                                         f"in the model, the profile says {got}")
            profiles.append(TrtProfile(info.name, *shapes))
            continue
        if not info.dynamic:
            continue
        lo, mid, hi = [], [], []
        for axis, d in enumerate(info.shape):
            if not is_dynamic_dim(d):
                lo.append(d), mid.append(d), hi.append(d)
            elif d in entries:
                r = entries[d]
                lo.append(r.min), mid.append(r.opt), hi.append(r.max)
            elif axis == 0:
                lo.append(default_batch[0]), mid.append(default_batch[1]), hi.append(default_batch[2])
                defaulted.add(d)
            else:
                raise UsageError(f"dynamic dimension {d!r} (axis {axis} of input {info.name!r}) needs a profile",
                                 fix=f"set tensorrt.profiles.{d}: {{min: .., opt: .., max: ..}}")
        profiles.append(TrtProfile(info.name, tuple(lo), tuple(mid), tuple(hi)))
    for d in sorted(defaulted):
        notes.append(f"dimension {d!r} has no profile: using min {default_batch[0]}, opt {default_batch[1]}, "
                     f"max {default_batch[2]} (set tensorrt.profiles.{d}); larger batches run in chunks")
    return tuple(profiles), notes


def _fmt_dims(shape: Sequence[int | str]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _example_shape(inputs: Sequence[InputInfo], name: str) -> str:
    info = next(i for i in inputs if i.name == name)
    return "[" + ", ".join(str(d if isinstance(d, int) else 1) for d in info.shape) + "]"


def precision_route(precision: str, major: int, settings: TensorRTSettings,
                    version: tuple[int, ...] | None = None) -> tuple[str, str, bool, list[str], list[str]]:
    """(ONNX file name, what it is, strongly typed?, builder flags, notes) for a precision on a TensorRT major."""
    dla = settings.dla_core is not None
    if precision == "fp32":
        return DEPLOY_ONNX["fp32"], "fp32 deploy graph", major >= 11, [], []
    if precision == "fp16":
        if major >= 11:
            return DEPLOY_ONNX["fp16"], "fp16-cast graph from the precision stage", True, [], []
        notes = []
        if version is not None and version[:2] >= (10, 12):
            notes.append("TensorRT 10.12+ deprecates weak typing (BuilderFlag.FP16); TensorRT 11 builds the "
                         "fp16-cast graph instead")
        return DEPLOY_ONNX["fp32"], "fp32 deploy graph; FP16 kernels by builder flag", False, ["FP16"], notes
    if precision != "int8":
        raise UsageError(f"TensorRT builds fp32, fp16 or int8, not {precision!r}")
    if settings.int8_route == "calibrator":
        if major >= 11:
            raise UsageError("`tensorrt.int8_route: calibrator` needs TensorRT 10: TensorRT 11 removed the IInt8 "
                             "calibrators and BuilderFlag.INT8",
                             fix="use int8_route: qdq (the Q/DQ ONNX the precision stage calibrates on the CPU)")
        notes = ["calibrator cache keyed by model hash + data hash + settings + TensorRT version; a stale cache is "
                 "refused, never reused",
                 "the implicit calibrator is deprecated since TensorRT 10.1 (its calls warn) and removed in 11"]
        if settings.calibration_data is None:
            notes.append("the calibrator needs tensorrt.calibration_data (an .npz of model inputs) unless its cache "
                         "is present and its key matches")
        if major == 8:
            notes[1] = "the implicit calibrator is deprecated from TensorRT 10.1 and removed in 11"
        return (DEPLOY_ONNX["fp32"], "fp32 deploy graph; INT8 scales from the calibrator", False, ["INT8", "FP16"],
                notes)
    if major in (8, 10) and dla:
        return (DEPLOY_ONNX["int8"], "Q/DQ int8 graph from the precision stage", False, ["INT8", "FP16"],
                [f"DLA on TensorRT {major} takes precision from builder flags: INT8 for the Q/DQ layers, FP16 for "
                 f"the layers between them"])
    if major in (8, 10) and settings.int8_unquantized == "fp16":
        return (DEPLOY_ONNX["int8"], "Q/DQ int8 graph from the precision stage; FP16 for layers without Q/DQ", False,
                ["INT8", "FP16"],
                ["layers without Q/DQ may run in fp16 (BuilderFlag.FP16, as trtexec --int8 --fp16 builds); "
                 "tensorrt.int8_unquantized: fp32 keeps them in fp32"])
    if major == 8:
        return (DEPLOY_ONNX["int8"], "Q/DQ int8 graph from the precision stage; fp32 for layers without Q/DQ", False,
                ["INT8"], [])
    notes = ["strongly typed: layers without Q/DQ run in the graph's types (fp32)"]
    if major >= 11 and settings.int8_unquantized == "fp16":
        notes[0] += "; TensorRT 11 has no FP16 flag, so fp16 there needs casts in the graph"
    return DEPLOY_ONNX["int8"], "Q/DQ int8 graph from the precision stage", True, [], notes


# ------------------------------------------------------------------------------------------------------- plan

def plan_build(inputs: Sequence[InputInfo], settings: TensorRTSettings | None, precision: str, out_dir: Path,
               *, deploy_dir: Path | None = None, trt_version: str | None = None, on_jetson: bool | None = None,
               default_batch: tuple[int, int, int] = DEFAULT_BATCH) -> TrtBuildPlan:
    """Decide every part of a TensorRT build; raises UsageError naming the setting that cannot work.

    `deploy_dir` holds deploy.onnx and the precision stage's deploy.fp16.onnx / deploy.int8.qdq.onnx
    (default: the parent of out_dir). `trt_version` is the installed TensorRT (None for a dry run, which then
    needs tensorrt.plan_for_major). `on_jetson` is whether the build runs on a Jetson (None: unknown).
    """
    settings = settings or TensorRTSettings()
    if precision not in _PRECISIONS:
        raise UsageError(f"TensorRT builds fp32, fp16 or int8, not {precision!r}")
    major = resolve_major(settings, trt_version)
    version = parse_version(trt_version)
    if version is not None and settings.plan_for_major is not None and version[0] != settings.plan_for_major:
        raise UsageError(f"tensorrt.plan_for_major is {settings.plan_for_major} but TensorRT {trt_version} "
                         f"is installed", fix="remove tensorrt.plan_for_major to build with the installed TensorRT")
    out_dir = Path(out_dir)
    deploy_dir = Path(deploy_dir) if deploy_dir is not None else out_dir.parent
    notes: list[str] = []
    builder_flags: list[str] = []
    cleared: list[str] = []
    parser_flags: list[str] = []
    network_flags: list[str] = []
    calibration: CalibrationPlan | None = None
    dla = settings.dla_core is not None

    # precision route
    onnx_name, role, strongly_typed, route_flags, route_notes = precision_route(
        precision, major, settings, version=version)
    builder_flags += route_flags
    notes += route_notes
    if precision == "int8" and settings.int8_route == "calibrator":
        algo = settings.calibrator
        cache = settings.calibration_cache or (out_dir / f"int8-{algo}.cache")
        calibration = CalibrationPlan(
            algorithm=algo,
            trt_class={"entropy2": "IInt8EntropyCalibrator2", "minmax": "IInt8MinMaxCalibrator"}[algo],
            data=settings.calibration_data, cache=Path(cache), batch_size=settings.calibration_batch_size)
    if strongly_typed and major == 10:
        network_flags.append("STRONGLY_TYPED")
    if major == 8:  # TensorRT 8's ONNX parser needs an explicit-batch network (the default from 10 on)
        network_flags.append("EXPLICIT_BATCH")
    optimization_level: int | None = settings.builder_optimization_level
    if major == 8 and (version is None or version[:2] < _TRT8_FEATURES):
        for setting, value, default in (("builder_optimization_level", settings.builder_optimization_level, 3),
                                        ("tactic_dram_mb", settings.tactic_dram_mb, None),
                                        ("hardware_compatibility", settings.hardware_compatibility, "none"),
                                        ("version_compatible", settings.version_compatible, False)):
            if value != default and version is not None:
                raise UsageError(f"`tensorrt.{setting}` needs TensorRT 8.6 or newer; this is TensorRT {trt_version}",
                                 fix=f"remove tensorrt.{setting} (JetPack 5.1 has TensorRT 8.5), or use JetPack 6")
            if value != default:
                notes.append(f"tensorrt.{setting} needs TensorRT 8.6+ (not on JetPack 5's 8.5)")
    if major == 8 and settings.builder_optimization_level == 3:
        optimization_level = None  # TensorRT's default; IBuilderConfig.builder_optimization_level arrives in 8.6
    if major == 8 and settings.hardware_compatibility == "same_compute_capability":
        raise UsageError("`tensorrt.hardware_compatibility: same_compute_capability` needs TensorRT 10.9 or newer",
                         fix="use ampere_plus, or upgrade TensorRT")
    if major >= 11:
        notes.append("TensorRT 11 networks are always strongly typed (the STRONGLY_TYPED flag is deprecated and "
                     "ignored, so it is not set)")
    if precision in ("fp32", "int8") and not settings.tf32:
        cleared.append("TF32")

    # DLA
    if dla:
        if precision == "fp32":
            raise UsageError("`tensorrt.dla_core` is set but DLA runs fp16 and int8 only",
                             fix="build --precision fp16 or int8, or remove tensorrt.dla_core")
        if major == 10 and version is not None and version[:2] > _DLA_LAST_TRT10:
            notes.append(f"TensorRT's docs name 10.7 as the last 10.x release with DLA; JetPack 6 ships its own "
                         f"10.x (6.1: 10.3); TensorRT {trt_version} may not offer DLA")
        if major >= 11:
            if version is not None and version < _DLA_FIRST_TRT11:
                raise UsageError(f"`tensorrt.dla_core` is set but TensorRT {trt_version} has no DLA on Jetson "
                                 f"(DLA returned in 11.4.1, Jetson AGX Orin with JetPack 7.2.2+)",
                                 fix="upgrade to TensorRT 11.4.1+ on JetPack 7.2.2+, or use JetPack 6 (TensorRT 10)")
            notes.append("DLA with TensorRT 11 needs 11.4.1+ on Jetson AGX Orin with JetPack 7.2.2+ (no DLA on Thor)")
        if settings.hardware_compatibility != "none":
            raise UsageError("`tensorrt.hardware_compatibility` applies to GPU engines; a DLA engine is built for "
                             "the DLA of the device it runs on", fix="set hardware_compatibility: none with dla_core")
        if major >= 11 or (version is not None and version[:2] >= _ADJUST_FOR_DLA_FIRST_TRT10):
            parser_flags.append("ADJUST_FOR_DLA")
            notes.append("the ONNX parser adjusts layers for the DLA (OnnxParserFlag.ADJUST_FOR_DLA)")
        elif version is None:
            notes.append("on TensorRT 10.16+ the ONNX parser also adjusts layers for the DLA "
                         "(OnnxParserFlag.ADJUST_FOR_DLA, trtexec --adjustForDLA)")
        if settings.gpu_fallback:
            builder_flags.append("GPU_FALLBACK")
            notes.append("layers DLA cannot run fall back to the GPU; the build reports them")
        else:
            notes.append("GPU fallback is off: the build fails if any layer cannot run on the DLA")
    profiles, profile_notes = plan_profiles(inputs, settings, default_batch)
    notes += profile_notes
    if dla:
        for p in profiles:
            if not p.static:
                raise UsageError(f"DLA does not support dynamic dimensions: input {p.input!r} has profile "
                                 f"min {list(p.min)} / opt {list(p.opt)} / max {list(p.max)}",
                                 fix="give every dynamic dimension min = opt = max in tensorrt.profiles "
                                     "(e.g. batch: {min: 1, opt: 1, max: 1})")

    # compatibility
    hw = settings.hardware_compatibility
    if hw != "none" and on_jetson:
        raise UsageError(f"`tensorrt.hardware_compatibility: {hw}` is not supported on JetPack (TensorRT supports "
                         f"hardware compatibility on Ampere+ discrete GPUs only)",
                         fix="set hardware_compatibility: none and build the engine on the Jetson that runs it")
    if hw != "none" and on_jetson is None:
        notes.append("hardware compatibility is not supported on JetPack (Jetson); this plan is for a discrete GPU")
    if hw == "ampere_plus":
        notes.append("hardware compatibility ampere_plus: build on an Ampere or newer GPU (compute capability 8.0+); "
                     "runs on 8.0+; fewer tactics (no cuDNN/cuBLAS), usually slower")
    elif hw == "same_compute_capability":
        if major == 10 and version is not None and version[:2] < _SAME_CC_FIRST_TRT10:
            raise UsageError(f"`tensorrt.hardware_compatibility: same_compute_capability` needs TensorRT 10.9 or "
                             f"newer; TensorRT {trt_version} has only none and ampere_plus",
                             fix="use ampere_plus, or upgrade TensorRT")
        notes.append("hardware compatibility same_compute_capability: runs on GPUs with the build GPU's compute "
                     "capability; build on a Turing or newer GPU (compute capability 7.5+)"
                     + ("; needs TensorRT 10.9+" if major == 10 and version is None else ""))
    if settings.version_compatible:
        builder_flags.append("VERSION_COMPATIBLE")
        notes.append("version-compatible: runs on later TensorRT " + (
            "10.x and 11.x runtimes" if major == 10 else f"{major}.x runtimes") + "; the plan embeds a lean runtime, "
            "so loading it allows host code from the plan (only load plans you built)")
    if hw != "none" or settings.version_compatible:
        parser_flags.append("NATIVE_INSTANCENORM")
    if settings.tactic_dram_mb:
        notes.append("trtexec has no tactic DRAM pool (its --memPoolSize takes workspace, dlaSRAM, dlaLocalDRAM, "
                     "dlaGlobalDRAM, tacticSharedMem): the trtexec line leaves it out")
    if settings.layer_precisions:
        if strongly_typed:
            raise UsageError("`tensorrt.layer_precisions` needs a weakly typed network, and this "
                             f"{precision} build on TensorRT {major} is strongly typed: precision comes from the graph",
                             fix="keep those layers out of int8 with int8.qdq.excluded.names (no Q/DQ around them: "
                                 "they run in the graph's fp32), or remove tensorrt.layer_precisions")
        builder_flags.append("OBEY_PRECISION_CONSTRAINTS")
        notes.append(f"{len(settings.layer_precisions)} layer(s) held to their precision "
                     f"(OBEY_PRECISION_CONSTRAINTS: the build fails rather than ignore one); trtexec's "
                     f"--layerPrecisions names TensorRT layers, so the trtexec line leaves them out")
        if version is not None and version[:2] >= (10, 12):
            notes.append("TensorRT 10.12+ deprecates per-layer precision constraints with weak typing")
    if settings.timing_cache is not None and hw != "none":
        notes.append("a timing cache is specific to the GPU, TensorRT version and builder flags it was made with")

    plan_path = out_dir / PLAN_FILE
    return TrtBuildPlan(
        trt_major=major, trt_version=trt_version, precision=precision,
        onnx_path=deploy_dir / onnx_name, onnx_role=role, strongly_typed=strongly_typed,
        network_flags=tuple(network_flags), builder_flags=tuple(builder_flags), cleared_flags=tuple(cleared),
        parser_flags=tuple(parser_flags), profiles=profiles,
        workspace_bytes=settings.workspace_mb * (1 << 20) if settings.workspace_mb else None,
        tactic_dram_bytes=settings.tactic_dram_mb * (1 << 20) if settings.tactic_dram_mb else None,
        builder_optimization_level=optimization_level,
        timing_cache=settings.timing_cache, device="DLA" if dla else "GPU", dla_core=settings.dla_core,
        gpu_fallback=settings.gpu_fallback if dla else False,
        hardware_compatibility=hw, version_compatible=settings.version_compatible, calibration=calibration,
        plan_path=plan_path, manifest_path=manifest_path_for(plan_path), notes=tuple(notes),
        layer_precisions=tuple(sorted(settings.layer_precisions.items())), timing_cache_seed=settings.timing_cache_seed)


def weakly_typed(precision: str, major: int, settings: TensorRTSettings) -> bool:
    """Whether a build of `precision` on TensorRT `major` takes per-layer precision constraints (weakly typed
    networks do; strongly typed ones take precision from the graph's types and Q/DQ)."""
    return not precision_route(precision, major, settings)[2]


def manifest_path_for(plan_path: Path) -> Path:
    """`model.plan` → `model.plan.json` (the sidecar manifest written next to every plan)."""
    plan_path = Path(plan_path)
    return plan_path.with_name(plan_path.name + ".json")


def require_planned_onnx(plan: TrtBuildPlan) -> Path:
    """The planned ONNX file, or a clear error when the precision stage has not produced it yet."""
    if plan.onnx_path.is_file():
        return plan.onnx_path
    made_by = {"deploy.onnx": "the optimize stage",
               DEPLOY_ONNX["fp16"]: "the precision stage (fp16 cast, keeping I/O types and sensitive ops in fp32)",
               DEPLOY_ONNX["int8"]: "the precision stage (Q/DQ int8, calibrated on the CPU)"}
    name = plan.onnx_path.name
    fix = {DEPLOY_ONNX["fp16"]: "build fp16 with TensorRT 10 (BuilderFlag.FP16 on deploy.onnx), or wait for the "
                                "precision stage's fp16 cast",
           DEPLOY_ONNX["int8"]: "the int8 Q/DQ ONNX arrives with the precision stage"}.get(name, "run the pipeline")
    raise EdgeDeployError(f"TensorRT {plan.trt_major} {plan.precision} builds from {name}, made by "
                          f"{made_by.get(name, 'an earlier stage')}, which does not exist yet",
                          where=str(plan.onnx_path), fix=fix)


# -------------------------------------------------------------------------------------------------- calibration

def calibration_key_material(*, model_sha256: str, data_sha256: str, plan: TrtBuildPlan,
                             libraries: Mapping[str, str | None]) -> dict[str, Any]:
    """What a calibration cache depends on: the model, the data, the calibrator settings and the libraries."""
    if plan.calibration is None:
        raise ValueError("the plan has no calibrator")
    return {
        "model_sha256": model_sha256,
        "data_sha256": data_sha256,
        "settings": {"algorithm": plan.calibration.algorithm, "batch_size": plan.calibration.batch_size,
                     "profiles": [{"input": p.input, "opt": list(p.opt)} for p in plan.profiles]},
        "libraries": dict(sorted(libraries.items())),
    }


def calibration_key(material: Mapping[str, Any]) -> str:
    """The key of a calibration cache: edgedeploy.precision.cache's one keying scheme for every calibration result."""
    return cache_keys.key_of(material)


def check_calibration_cache(cache: Path, material: Mapping[str, Any]) -> bool:
    """True when `cache` exists and was made from exactly `material`; False when there is none (calibrate).

    A cache whose key file (`<cache>.json`) is missing or different is refused with the fields that changed, and one
    whose bytes no longer match the size and sha256 in its key file is refused as changed: it is never reused
    silently (the failure users of other exporters hit with stale `.cache` files).
    """
    cache = Path(cache)
    return cache_keys.check_key_file(cache, cache.with_name(cache.name + ".json"), material)


def calibration_key_record(material: Mapping[str, Any], cache: Path) -> dict[str, Any]:
    """The content of `<cache>.json`, written next to the calibration cache once it is written: the key and the
    cache file's size and sha256, so a changed or truncated cache is refused too."""
    return cache_keys.key_record(material, Path(cache), schema="edgedeploy.trt-calibration/2")


# ------------------------------------------------------------------------------------------------------ trtexec

def batch_range(plan: TrtBuildPlan) -> tuple[int, int] | None:
    """(smallest, largest) leading dimension every profiled input accepts, or None when no input is profiled."""
    if not plan.profiles:
        return None
    lo = max(p.min[0] for p in plan.profiles if p.min)
    hi = min(p.max[0] for p in plan.profiles if p.max)
    if lo > hi:
        raise UsageError(f"the inputs' profiles share no batch size (leading dimensions {lo}..{hi})")
    return lo, hi


def trtexec_command(plan: TrtBuildPlan, *, batch: int | None = None, engine_out: Path | None = None,
                    trtexec: str = "trtexec") -> list[str]:
    """The trtexec invocation that builds the same ONNX the way the plan does (for side-by-side timing).

    Every flag is one trtexec of the plan's major version parses (tests check each line against trtexec's sources),
    and every profile is stated, a static one (min = opt = max, as DLA needs) too: trtexec would otherwise build
    with dynamic dimensions set to 1. `batch` sets the leading dimension of `--shapes` (inference shapes; without
    it trtexec runs the opt shapes); it must lie in every profile's range.
    """
    cmd = [trtexec, f"--onnx={plan.onnx_path}"]
    if "FP16" in plan.builder_flags:
        cmd.append("--fp16")
    if "INT8" in plan.builder_flags:
        cmd.append("--int8")
    if plan.calibration is not None:  # the implicit calibrator's scales: trtexec reads the cache we wrote
        cmd.append(f"--calib={plan.calibration.cache}")
    if "STRONGLY_TYPED" in plan.network_flags:
        cmd.append("--stronglyTyped")
    if "TF32" in plan.cleared_flags:
        cmd.append("--noTF32")
    if plan.profiles:
        fmt = lambda attr: ",".join(f"{p.input}:{'x'.join(map(str, getattr(p, attr)))}"  # noqa: E731
                                    for p in plan.profiles)
        cmd += [f"--minShapes={fmt('min')}", f"--optShapes={fmt('opt')}", f"--maxShapes={fmt('max')}"]
    if batch is not None:
        rng = batch_range(plan)
        if rng is None or not rng[0] <= batch <= rng[1]:
            raise UsageError(f"batch {batch} is outside the plan's batch range "
                             f"{'static' if rng is None else f'{rng[0]}..{rng[1]}'}")
        cmd.append("--shapes=" + ",".join(f"{p.input}:{'x'.join(map(str, (batch, *p.opt[1:])))}"
                                          for p in plan.profiles))
    if plan.workspace_bytes:
        cmd.append(f"--memPoolSize=workspace:{plan.workspace_bytes // (1 << 20)}M")
    if plan.builder_optimization_level is not None:
        cmd.append(f"--builderOptimizationLevel={plan.builder_optimization_level}")
    if plan.device == "DLA":
        cmd.append(f"--useDLACore={plan.dla_core}")
        if plan.gpu_fallback:
            cmd.append("--allowGPUFallback")
    if "ADJUST_FOR_DLA" in plan.parser_flags:
        cmd.append("--adjustForDLA")
    if plan.hardware_compatibility != "none":
        level = {"ampere_plus": "ampere+", "same_compute_capability": "sameComputeCapability"}
        cmd.append(f"--hardwareCompatibilityLevel={level[plan.hardware_compatibility]}")
    if plan.version_compatible:
        cmd.append("--versionCompatible")
    if plan.timing_cache:
        cmd.append(f"--timingCacheFile={plan.timing_cache}")
    if engine_out is not None:
        cmd.append(f"--saveEngine={engine_out}")
    return cmd


__all__ = [
    "CalibrationPlan", "DEPLOY_ONNX", "InputInfo", "PLAN_FILE", "TrtBuildPlan", "TrtProfile", "batch_range",
    "calibration_key", "calibration_key_material", "calibration_key_record", "check_calibration_cache",
    "inputs_from_onnx", "inputs_from_spec", "is_dynamic_dim", "manifest_path_for", "parse_version", "plan_build",
    "plan_profiles", "precision_route", "require_planned_onnx", "resolve_major", "trtexec_command", "weakly_typed",
]
