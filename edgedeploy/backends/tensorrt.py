"""TensorRT 10 (JetPack 6) and 11 (strongly typed): the thin layer that applies a `TrtBuildPlan` to real TensorRT
objects, and the runner (I/O tensor API + cuda-python, no torch).

Every decision (precision route, flags, profiles, DLA, compatibility) is made in `trt_plan.py` and tested without a
GPU; this file only translates the plan into API calls and reports what TensorRT did: parser errors with the node's
name and op, layers that fell back from the DLA to the GPU, the plan's manifest (`model.plan.json`). `import
tensorrt` happens inside the methods, so `--target trt` without TensorRT is one line saying what to install.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import platform
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy import arrayfile, fileio
from edgedeploy.backends import trt_cuda, trt_manifest, trt_plan
from edgedeploy.backends.base import BuildResult
from edgedeploy.backends.trt_timing import summarize_ms
from edgedeploy.config import TensorRTSettings
from edgedeploy.errors import EdgeDeployError, UsageError


def install_hint() -> str:
    if platform.machine() == "aarch64":  # NVIDIA's SBSA wheels need Ubuntu 24.04+: JetPack 7, not JetPack 6
        return ("TensorRT is not installed: on JetPack 6 install JetPack's TensorRT packages (sudo apt install "
                "nvidia-tensorrt python3-libnvinfer); on JetPack 7.2.2+ (Ubuntu 24.04) pip install tensorrt "
                "(NVIDIA's ARM SBSA wheels) or the apt packages")
    return 'TensorRT is not installed: pip install "edgedeploy[tensorrt]" (the tensorrt wheel; needs an NVIDIA GPU)'


def _import_trt() -> Any:
    try:
        import tensorrt as trt
    except (ImportError, OSError):
        raise EdgeDeployError(install_hint()) from None
    return trt


def probe_runtime() -> dict[str, Any]:
    """What this machine can run: TensorRT version and GPU, or the reason it cannot tell. Never raises."""
    try:
        import tensorrt as trt
    except (ImportError, OSError):
        return {"trt_version": None, "gpu": None, "reason": "TensorRT is not installed here"}
    try:
        gpu = trt_cuda.device_info()
    except EdgeDeployError as e:
        return {"trt_version": trt.__version__, "gpu": None, "reason": e.message}
    return {"trt_version": trt.__version__, "gpu": gpu, "reason": None}


_LOGGERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # the tensorrt module → its logger


def process_logger(trt: Any) -> Any:
    """The one TensorRT logger of this process. TensorRT treats its logger as a singleton: every Builder, Runtime and
    parser must be given the same one, and messages go to the first one it was given, so a logger per object loses
    the errors of every object but the first. This one keeps the last 1000 warnings and errors, numbered, so each
    operation can read what it caused (`mark()` before, `errors_since(mark)` after)."""
    logger = _LOGGERS.get(trt)
    if logger is None:
        logger = _LOGGERS[trt] = _collecting_logger(trt)
    return logger


def _collecting_logger(trt: Any) -> Any:
    base = trt.ILogger
    error_level = int(base.Severity.ERROR)
    warning_level = int(base.Severity.WARNING)

    class Collecting(base):
        def __init__(self) -> None:
            base.__init__(self)
            self.count = 0
            self.kept: collections.deque[tuple[int, int, str]] = collections.deque(maxlen=1000)

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level <= warning_level:
                self.kept.append((self.count, level, str(msg)))
                self.count += 1

        def mark(self) -> int:
            return self.count

        def errors_since(self, mark: int) -> list[str]:
            return [m for n, level, m in self.kept if n >= mark and level <= error_level]

        def warnings_since(self, mark: int) -> list[str]:
            return [m for n, level, m in self.kept if n >= mark and level == warning_level]

    return Collecting()


def _last_error(logger: Any, mark: int) -> str:
    errors = logger.errors_since(mark)
    return f": {errors[-1].strip()}" if errors else ""


def _enum(trt_enum: Any, member: str, what: str, version: str) -> Any:
    try:
        return getattr(trt_enum, member)
    except AttributeError:
        raise EdgeDeployError(f"TensorRT {version} has no {what}.{member}",
                              fix="the plan needs another TensorRT version; plan the build with the installed "
                                  "TensorRT (edgedeploy build plans from it)") from None


def numpy_dtype(trt: Any, dtype: Any, tensor: str, where: Path) -> np.dtype:
    """The numpy dtype of a TensorRT I/O tensor; numpy has none for bf16, fp8, int4 (trt.nptype raises TypeError)."""
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:
        name = str(getattr(dtype, "name", dtype))
        raise EdgeDeployError(f"tensor {tensor!r} is {name}, which numpy has no type for, so edgedeploy cannot feed "
                              f"or read it", where=str(where),
                              fix="give the model float32/float16/int I/O and keep the other types inside the graph "
                                  "(cast after the input, before the output)") from None


def _dtype_name(trt: Any, dtype: Any) -> str:
    try:
        return np.dtype(trt.nptype(dtype)).name
    except (TypeError, KeyError):
        return str(dtype).split(".")[-1].lower()


class TensorRTBackend:
    name = "trt"
    precisions = ("fp32", "fp16", "int8")

    def missing(self) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except (ImportError, OSError):  # the PyPI bindings without NVIDIA's libraries raise ImportError on a .so
            return install_hint()
        return None

    # ------------------------------------------------------------------------------------------------- build
    def plan(self, onnx_path: Path, out_dir: Path, precision: str,
             settings: TensorRTSettings | None = None) -> trt_plan.TrtBuildPlan:
        """The build plan for the installed TensorRT, its inputs read from the planned ONNX file."""
        trt = _import_trt()
        settings = settings or TensorRTSettings()
        if settings.plan_for_major is not None:  # a dry-run override has no place in a real build
            settings = settings.model_copy(update={"plan_for_major": None})
        deploy_dir = Path(onnx_path).parent
        major = trt_plan.resolve_major(settings, trt.__version__)
        name = trt_plan.precision_route(precision, major, settings, trt_plan.parse_version(trt.__version__))[0]
        onnx_file = deploy_dir / name
        inputs = trt_plan.inputs_from_onnx(onnx_file) if onnx_file.is_file() else []
        plan = trt_plan.plan_build(inputs, settings if inputs else settings.model_copy(update={"profiles": {}}),
                                   precision, out_dir, deploy_dir=deploy_dir, trt_version=trt.__version__,
                                   on_jetson=trt_cuda.is_jetson())
        trt_plan.require_planned_onnx(plan)  # a clear error when the precision stage has not made the file yet
        return plan

    def build(self, onnx_path: Path, out_dir: Path, precision: str,
              settings: TensorRTSettings | None = None) -> BuildResult:
        if precision not in self.precisions:
            raise UsageError(f"the trt target builds {', '.join(self.precisions)}, not {precision}")
        plan = self.plan(onnx_path, out_dir, precision, settings)
        return apply_plan(plan)

    def build_marked(self, onnx_path: Path, out_dir: Path, precision: str,
                     settings: TensorRTSettings | None = None) -> BuildResult:
        """The engine `build` makes, with every layer output marked as a network output (Polygraphy's
        `--trt-outputs mark all`): what `edgedeploy debug precision --target trt` compares layer by layer. Marking
        stops TensorRT fusing across those tensors, so its figures are of the engine without those fusions."""
        plan = self.plan(onnx_path, out_dir, precision, settings)
        return apply_plan(dataclasses.replace(plan, mark_all_outputs=True))

    # -------------------------------------------------------------------------------------------------- load
    def load(self, build: BuildResult, settings: TensorRTSettings | None = None,
             threads: int | None = None) -> TensorRTRunner:
        return load_plan(build.artifact)


def apply_plan(plan: trt_plan.TrtBuildPlan) -> BuildResult:
    """Build and write the engine the plan describes, its manifest and its layer report."""
    trt = _import_trt()
    version = trt.__version__
    onnx_path = trt_plan.require_planned_onnx(plan)
    gpu = trt_cuda.device_info()
    logger = process_logger(trt)
    mark = logger.mark()
    builder = trt.Builder(logger)

    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(_enum(trt.NetworkDefinitionCreationFlag, name, "NetworkDefinitionCreationFlag", version))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    for name in plan.parser_flags:
        parser.set_flag(_enum(trt.OnnxParserFlag, name, "OnnxParserFlag", version))
    if not parser.parse_from_file(str(onnx_path)):
        raise _parser_error(parser, onnx_path, logger, mark)
    constrained = _constrain_layers(trt, network, plan, onnx_path) if plan.layer_precisions else {}
    marked = _mark_all_outputs(trt, network) if plan.mark_all_outputs else []

    config = builder.create_builder_config()
    for name in plan.builder_flags:
        config.set_flag(_enum(trt.BuilderFlag, name, "BuilderFlag", version))
    for name in plan.cleared_flags:
        config.clear_flag(_enum(trt.BuilderFlag, name, "BuilderFlag", version))
    if plan.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    if plan.tactic_dram_bytes:
        config.set_memory_pool_limit(_enum(trt.MemoryPoolType, "TACTIC_DRAM", "MemoryPoolType", version),
                                     plan.tactic_dram_bytes)
    if plan.builder_optimization_level is not None:  # TensorRT 8.5 has no optimization level
        config.builder_optimization_level = plan.builder_optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer names and precisions for the inspector

    _check_network_inputs(network, plan, onnx_path)
    if plan.profiles:
        profile = builder.create_optimization_profile()
        for p in plan.profiles:
            profile.set_shape(p.input, p.min, p.opt, p.max)
        if config.add_optimization_profile(profile) < 0:
            raise EdgeDeployError(f"TensorRT refused the optimization profile{_last_error(logger, mark)}",
                                  where=str(onnx_path), fix="check tensorrt.profiles against the model's inputs")

    if plan.hardware_compatibility != "none":
        member, minimum, generation = {
            "ampere_plus": ("AMPERE_PLUS", (8, 0), "an Ampere"),
            # NvInfer.h: "only supported for engines built on NVIDIA Turing and later GPUs"
            "same_compute_capability": ("SAME_COMPUTE_CAPABILITY", (7, 5), "a Turing"),
        }[plan.hardware_compatibility]
        level = _enum(trt.HardwareCompatibilityLevel, member, "HardwareCompatibilityLevel", version)
        built_cc = tuple(int(x) for x in gpu["compute_capability"].split("."))
        if built_cc < minimum:
            raise UsageError(f"hardware_compatibility {plan.hardware_compatibility} must be built on {generation} or "
                             f"newer GPU; {gpu['name']} has compute capability {gpu['compute_capability']}")
        config.hardware_compatibility_level = level

    fallback_layers: list[dict[str, Any]] = []
    if plan.device == "DLA":
        cores = builder.num_DLA_cores
        if plan.dla_core >= cores:
            raise UsageError(f"`tensorrt.dla_core: {plan.dla_core}` but this device has {cores} DLA core(s)",
                             fix="DLA exists on Jetson Xavier and Orin AGX/NX; use a core below the count, or remove "
                                 "dla_core")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if not config.can_run_on_DLA(layer):
                fallback_layers.append({"name": layer.name, "type": str(layer.type).split(".")[-1]})
        if fallback_layers and not plan.gpu_fallback:
            names = ", ".join(f"{x['name']} ({x['type']})" for x in fallback_layers[:10])
            raise EdgeDeployError(f"{len(fallback_layers)} layer(s) cannot run on the DLA and GPU fallback is off: "
                                  f"{names}", where=str(onnx_path), fix="set tensorrt.gpu_fallback: true")

    calibration_info = None
    calibrator = None
    try:
        if plan.calibration is not None:
            calibrator, calibration_info = _make_calibrator(trt, builder, config, network, plan, onnx_path)
        loaded = Path(plan.timing_cache).read_bytes() if plan.timing_cache and Path(plan.timing_cache).is_file() \
            else None
        timing_cache, timing_note = _load_timing_cache(config, plan.timing_cache, logger, mark)
        if plan.timing_cache_seed is not None:
            timing_note += _combine_seed(config, timing_cache, Path(plan.timing_cache_seed), logger, mark)
        start = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        seconds = time.perf_counter() - start
        if calibrator is not None:
            calibrator.raise_failure()  # TensorRT's wrapper swallows exceptions raised in the calibrator's methods
    finally:
        if calibrator is not None:  # the config holds the calibrator: detach it, then free its device buffers
            config.int8_calibrator = None
            calibrator.free()
    if serialized is None:
        errors = " ".join(logger.errors_since(mark)).lower()
        if any(word in errors for word in _OUT_OF_MEMORY):
            raise EdgeDeployError(f"TensorRT ran out of memory building the engine{_last_error(logger, mark)}",
                                  where=str(onnx_path),
                                  fix="lower tensorrt.workspace_mb and tensorrt.tactic_dram_mb (tactics then use "
                                      "less memory), tensorrt.builder_optimization_level, or the profile's max "
                                      "shapes; close other GPU processes (on a Jetson the GPU shares the board's RAM)")
        raise EdgeDeployError(f"TensorRT could not build the engine{_last_error(logger, mark)}", where=str(onnx_path),
                              fix="rerun with --debug; check the workspace limit and the layers named above")
    data = bytes(memoryview(serialized))
    fileio.write_bytes(plan.plan_path, data)
    if plan.timing_cache is not None:
        timing_note += _save_timing_cache(config, timing_cache, Path(plan.timing_cache), loaded)

    # inspect what was built: I/O tensors, layers, and (on DLA) what ran where
    runtime = trt.Runtime(logger)
    if plan.version_compatible:
        runtime.engine_host_code_allowed = True  # our own plan: it embeds the lean runtime
    if plan.device == "DLA":
        runtime.DLA_core = plan.dla_core
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise EdgeDeployError(f"TensorRT wrote a plan it cannot load back{_last_error(logger, mark)}",
                              where=str(plan.plan_path))
    io_tensors = _io_tensors(trt, engine)
    layers_path = plan.plan_path.with_name(plan.plan_path.name + ".layers.json")
    layer_info = _engine_layers(trt, engine)
    fileio.write_json(layers_path, layer_info)
    manifest = trt_manifest.build_manifest(
        plan_description=plan.describe(), plan_path=plan.plan_path, onnx_path=onnx_path, trt_version=version,
        gpu=gpu, platform={"machine": platform.machine(), "jetson": trt_cuda.is_jetson()},
        io_tensors=io_tensors, gpu_fallback_layers=fallback_layers, build_seconds=round(seconds, 3),
        calibration=calibration_info, engine_layers=len(layer_info.get("Layers", [])))
    fileio.write_json(plan.manifest_path, manifest)  # last: the manifest certifies the plan by its hash

    info = {
        "precision": plan.precision,
        "tensorrt_version": version,
        "gpu": gpu["name"],
        "compute_capability": gpu["compute_capability"],
        "route": plan.onnx_role,
        "onnx": onnx_path.name,
        "strongly_typed": plan.strongly_typed,
        "builder_flags": list(plan.builder_flags),
        "device": plan.device if plan.device == "GPU" else f"DLA core {plan.dla_core}",
        "gpu_fallback_layers": fallback_layers,
        "hardware_compatibility": plan.hardware_compatibility,
        "version_compatible": plan.version_compatible,
        "build_seconds": round(seconds, 3),
        "timing_cache": timing_note,
        "manifest": plan.manifest_path.name,
        "tensorrt_warnings": logger.warnings_since(mark)[:20],
    }
    if constrained:
        info["layer_precisions"] = constrained
    if plan.mark_all_outputs:
        info["marked_outputs"] = len(marked)
    return BuildResult(artifact=plan.plan_path, files=[plan.plan_path, layers_path, plan.manifest_path], info=info)


# how TensorRT's build errors say it ran out of memory (its allocator, CUDA's error names, the builder's messages)
_OUT_OF_MEMORY = ("out of memory", "cudaerrormemoryallocation", "requested amount of gpu memory",
                  "insufficient memory", "failed to allocate")


def _parser_error(parser: Any, onnx_path: Path, logger: Any, mark: int) -> EdgeDeployError:
    """The parser's errors with the failing node's name and op (from the error, else from the ONNX graph)."""
    nodes = None
    described = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        index = int(err.node()) if hasattr(err, "node") else -1
        name = _maybe(err, "node_name")
        op = _maybe(err, "node_operator")
        if (not name or not op) and index >= 0:
            if nodes is None:
                import onnx

                nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
            if index < len(nodes):
                name = name or nodes[index].name
                op = op or nodes[index].op_type
        if index < 0:
            where = "the graph"
        else:
            where = f"node {name!r}" if name else f"node #{index}"
            where += f" ({op}, #{index})" if name and op else (f" ({op})" if op else "")
        described.append(f"{where}: {err.code()}: {str(err.desc()).strip()}")
    if not described:
        described.append(f"no parser error recorded{_last_error(logger, mark)}")
    more = f" (+{len(described) - 1} more)" if len(described) > 1 else ""
    return EdgeDeployError(f"TensorRT's ONNX parser rejected {described[0]}{more}", where=str(onnx_path),
                           fix="check the op against TensorRT's ONNX operator support for this version, or keep "
                               "that node out of the graph")


def _maybe(obj: Any, method: str) -> str | None:
    fn = getattr(obj, method, None)
    if fn is None:
        return None
    try:
        value = fn()
    except Exception:  # noqa: BLE001 - optional detail
        return None
    return str(value) if value not in (None, "") else None


_PRECISION_TYPES = {"fp32": "FLOAT", "fp16": "HALF"}
_FLOAT_TYPES = ("FLOAT", "HALF", "BF16")
# layers whose outputs a float graph has no twin of: int8 Q/DQ values, constants, shape computations
_UNMARKED_LAYERS = ("QUANTIZE", "DEQUANTIZE", "CONSTANT", "SHAPE")


def _constrain_layers(trt: Any, network: Any, plan: trt_plan.TrtBuildPlan, onnx_path: Path) -> dict[str, list[str]]:
    """`tensorrt.layer_precisions`: the TensorRT layers of each named ONNX node (the layer that writes one of the
    node's output tensors, or carries its name) compute in the given type (ILayer.precision) and write it
    (set_output_type on each float output); the plan sets OBEY_PRECISION_CONSTRAINTS, so TensorRT fails the build
    rather than drop one. Returns node → the layers constrained."""
    import onnx

    version = trt.__version__
    nodes = {n.name: set(n.output) for n in onnx.load(str(onnx_path), load_external_data=False).graph.node
             if n.name}
    unknown = [name for name, _ in plan.layer_precisions if name not in nodes]
    if unknown:
        raise UsageError(f"tensorrt.layer_precisions names {unknown[0]!r}, which is no node of {onnx_path.name}",
                         where=str(onnx_path), fix="use the ONNX node names `edgedeploy debug precision` lists")
    wanted = {name: _enum(trt.DataType, _PRECISION_TYPES[p], "DataType", version) for name, p in plan.layer_precisions}
    floats = {getattr(trt.DataType, n) for n in _FLOAT_TYPES if hasattr(trt.DataType, n)}
    constrained: dict[str, list[str]] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        for name, dtype in wanted.items():
            if layer.name != name and not nodes[name] & {t.name for t in outputs}:
                continue
            layer.precision = dtype
            for j, tensor in enumerate(outputs):
                if tensor.dtype in floats:  # shape and index outputs keep their integer types
                    layer.set_output_type(j, dtype)
            constrained.setdefault(name, []).append(layer.name)
    missing = [name for name in wanted if name not in constrained]
    if missing:
        raise EdgeDeployError(f"no TensorRT layer comes from node {missing[0]!r} (TensorRT's parser folded it away "
                              f"or fused it at import), so tensorrt.layer_precisions cannot hold it",
                              where=str(onnx_path), fix=f"remove {missing[0]!r} from tensorrt.layer_precisions")
    return constrained


def _mark_all_outputs(trt: Any, network: Any) -> list[str]:
    """Every float output of every layer becomes a network output, in layer order; outputs of Q/DQ, constant and
    shape layers are left alone (int8 or shape values the float graph has no twin of). Returns the names marked."""
    skip = {getattr(trt.LayerType, n) for n in _UNMARKED_LAYERS if hasattr(trt.LayerType, n)}
    floats = {getattr(trt.DataType, n) for n in _FLOAT_TYPES if hasattr(trt.DataType, n)}
    marked = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in skip:
            continue
        for j in range(layer.num_outputs):
            tensor = layer.get_output(j)
            if tensor.is_network_output or tensor.is_shape_tensor or tensor.dtype not in floats:
                continue
            network.mark_output(tensor)
            marked.append(tensor.name)
    return marked


def _check_network_inputs(network: Any, plan: trt_plan.TrtBuildPlan, onnx_path: Path) -> None:
    profiled = {p.input for p in plan.profiles}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if any(int(d) < 0 for d in tensor.shape) and tensor.name not in profiled:
            raise EdgeDeployError(f"input {tensor.name!r} has dynamic shape {list(tensor.shape)} in TensorRT's "
                                  f"network but no profile in the plan", where=str(onnx_path),
                                  fix=f"set tensorrt.profiles.{tensor.name}")


def _load_timing_cache(config: Any, path: Path | None, logger: Any, mark: int) -> tuple[Any, str]:
    """Attach a timing cache: the one at `path` when it exists and TensorRT takes it, else a fresh one. TensorRT
    returns None from create_timing_cache for a stale or corrupt cache (NVIDIA's own samples check for that) and
    False from set_timing_cache for one made on another GPU or TensorRT version; either way the build starts over
    with a fresh cache, which is saved over the old one. Returns the cache and what happened, in words."""
    if path is not None and Path(path).is_file():
        cache = config.create_timing_cache(Path(path).read_bytes())
        if cache is not None and config.set_timing_cache(cache, False):
            return cache, f"reused {path}"
        why = "unreadable" if cache is None else "made on another GPU or TensorRT version"
        note = f"{path} was {why}{_last_error(logger, mark)}; started a fresh cache"
    else:
        note = "fresh" + (f" (saved to {path})" if path is not None else " (in memory only)")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise EdgeDeployError(f"TensorRT could not create a timing cache{_last_error(logger, mark)}",
                              fix="rerun with --debug; the TensorRT installation may be incomplete")
    return cache, note


def _combine_seed(config: Any, cache: Any, seed: Path, logger: Any, mark: int) -> str:
    """Combine a seed cache's entries (a bundle's, made by an earlier build of the same model) into the build's
    cache before it starts; saving the build's cache then merges them into the device's cache file under its lock.
    A seed TensorRT cannot read, or made on another GPU or TensorRT version, is left out, said in the note."""
    other = config.create_timing_cache(seed.read_bytes()) if seed.is_file() else None
    if other is None:
        return f"; seed {seed.name} {'missing' if not seed.is_file() else 'unreadable'}{_last_error(logger, mark)}"
    if not cache.combine(other, False):
        return f"; seed {seed.name} was made on another GPU or TensorRT version: not used"
    return f"; combined with the entries of {seed.name}"


def _save_timing_cache(config: Any, cache: Any, path: Path, loaded: bytes | None) -> str:
    """Save the build's timing cache, merging what other builds saved meanwhile (several builds sharing a cache
    on one board, or a CI runner): under an exclusive lock on `<cache>.lock`, a file that changed since this build
    read it is combined in (ITimingCache.combine) rather than overwritten; the write is atomic. Returns a note."""
    import fcntl

    lock_path = path.with_name(path.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            note = ""
            current = path.read_bytes() if path.is_file() else None
            if current is not None and current != loaded:
                other = config.create_timing_cache(current)
                if other is not None and cache.combine(other, False):
                    note = "; merged with the entries another build saved meanwhile"
                else:
                    note = "; replaced a cache another build saved meanwhile (made on another GPU or TensorRT)"
            fileio.write_bytes(path, bytes(memoryview(cache.serialize())))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return note


def _io_tensors(trt: Any, engine: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = [int(d) for d in engine.get_tensor_shape(name)]
        entry: dict[str, Any] = {"name": name, "mode": "input" if is_input else "output",
                                 "dtype": _dtype_name(trt, engine.get_tensor_dtype(name)), "shape": shape,
                                 "profile": None}
        if is_input and any(d < 0 for d in shape):
            lo, mid, hi = engine.get_tensor_profile_shape(name, 0)
            entry["profile"] = {"min": [int(d) for d in lo], "opt": [int(d) for d in mid], "max": [int(d) for d in hi]}
        out.append(entry)
    return out


def _engine_layers(trt: Any, engine: Any) -> dict[str, Any]:
    try:
        inspector = engine.create_engine_inspector()
        text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        return json.loads(text)
    except Exception as e:  # noqa: BLE001 - the layer report is informative
        return {"error": f"engine inspector unavailable: {type(e).__name__}: {e}"}


def _make_calibrator(trt: Any, builder: Any, config: Any, network: Any, plan: trt_plan.TrtBuildPlan,
                     onnx_path: Path) -> tuple[Any, dict[str, Any]]:
    """TensorRT 10's implicit calibrator; its cache is keyed by model + data + settings + TensorRT version and a
    stale one is refused (trt_plan.check_calibration_cache)."""
    cal = plan.calibration
    cache = Path(cal.cache)
    key_file = cache.with_name(cache.name + ".json")
    if cal.data is not None and not Path(cal.data).is_file():
        raise UsageError("calibration data not found", where=str(cal.data), fix="check tensorrt.calibration_data")
    if cal.data is not None:
        data_sha = fileio.sha256_file(cal.data)
    elif cache.exists() and key_file.is_file():  # a cache alone: everything but the data must still match
        data_sha = json.loads(key_file.read_text()).get("material", {}).get("data_sha256", "")
    else:
        raise UsageError("the int8 calibrator needs data: set tensorrt.calibration_data (an .npz of model inputs, "
                         "one array per input name)")
    material = trt_plan.calibration_key_material(model_sha256=fileio.sha256_file(onnx_path), data_sha256=data_sha,
                                                 plan=plan, libraries={"tensorrt": trt.__version__})
    reuse = trt_plan.check_calibration_cache(cache, material)
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    static = {network.get_input(i).name: all(int(d) > 0 for d in network.get_input(i).shape)
              for i in range(network.num_inputs)}
    batch = cal.batch_size
    if all(static.values()):
        batch = int(network.get_input(0).shape[0])
    dtypes = {network.get_input(i).name: numpy_dtype(trt, network.get_input(i).dtype, network.get_input(i).name,
                                                     onnx_path) for i in range(network.num_inputs)}
    batches = [] if reuse else _calibration_batches(Path(cal.data), dtypes, batch)
    if not reuse and not batches:
        raise UsageError(f"calibration data has fewer than {batch} samples", where=str(cal.data))
    base = {"entropy2": trt.IInt8EntropyCalibrator2, "minmax": trt.IInt8MinMaxCalibrator}[cal.algorithm]

    class Calibrator(base):
        """TensorRT calls these methods during the build through a wrapper that prints and swallows any exception
        (calibration would just end early), so each one keeps its exception for `raise_failure()` after the build."""

        def __init__(self) -> None:
            base.__init__(self)
            self.index = 0
            self.buffers: dict[str, trt_cuda.DeviceBuffer] = {}
            self.failure: tuple[str, Exception] | None = None  # (while doing what, the exception)

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks carry the batch in each input's shape

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.failure is not None or self.index >= len(batches):
                return None
            try:
                feed = batches[self.index]
                ptrs = []
                for name in names:
                    arr = feed[name]
                    buf = self.buffers.get(name)
                    if buf is None or buf.nbytes < arr.nbytes:
                        if buf is not None:
                            buf.free()
                        buf = self.buffers[name] = trt_cuda.DeviceBuffer(arr.nbytes)
                    trt_cuda.upload(buf, arr)
                    ptrs.append(buf.ptr)
            except Exception as e:  # noqa: BLE001 - kept and raised after the build (see the class docstring)
                self.failure = (f"at batch {self.index + 1} of {len(batches)}", e)
                return None
            self.index += 1
            return ptrs

        def read_calibration_cache(self) -> bytes | None:
            try:
                return cache.read_bytes() if reuse else None
            except Exception as e:  # noqa: BLE001 - as in get_batch
                self.failure = ("reading the calibration cache", e)
                return None

        def write_calibration_cache(self, data: Any) -> None:
            try:
                fileio.write_bytes(cache, bytes(memoryview(data)))
                fileio.write_json(key_file, trt_plan.calibration_key_record(material, cache))
            except Exception as e:  # noqa: BLE001 - as in get_batch
                self.failure = ("writing the calibration cache", e)

        def raise_failure(self) -> None:
            if self.failure is None:
                return
            doing, e = self.failure
            detail = e.message if isinstance(e, EdgeDeployError) else f"{type(e).__name__}: {e}"
            raise EdgeDeployError(f"INT8 calibration failed {doing}: {detail}", where=str(cal.data or cache)) from e

        def free(self) -> None:
            for buf in self.buffers.values():
                buf.free()
            self.buffers = {}

    calibrator = Calibrator()
    config.int8_calibrator = calibrator
    if batches and not all(static.values()):  # calibrate at the calibration batch's exact shapes
        profile = builder.create_optimization_profile()
        for name in names:
            shape = tuple(batches[0][name].shape)
            profile.set_shape(name, shape, shape, shape)
        config.set_calibration_profile(profile)
    info = {"class": cal.trt_class, "cache": str(cache), "reused": reuse, "key": trt_plan.calibration_key(material),
            "batches": len(batches), "batch_size": batch, "data": str(cal.data) if cal.data else None}
    return calibrator, info


def _calibration_batches(path: Path, dtypes: dict[str, np.dtype], batch: int) -> list[dict[str, np.ndarray]]:
    """Batches of model inputs from an .npz (arrays named like the inputs, or `input.<name>` as in reference.npz)."""
    with arrayfile.open_npz(path, "calibration data", fix="check tensorrt.calibration_data") as data:
        arrays = {}
        for name, dtype in dtypes.items():
            key = name if name in data.files else f"input.{name}"
            if key not in data.files:
                raise UsageError(f"calibration data has no array for input {name!r} (has {sorted(data.files)})",
                                 where=str(path))
            arrays[name] = np.asarray(data[key], dtype=dtype)
    count = min(len(a) for a in arrays.values())
    return [{k: np.ascontiguousarray(v[i:i + batch]) for k, v in arrays.items()}
            for i in range(0, count - batch + 1, batch)]


# ------------------------------------------------------------------------------------------------------- runner

def _output_allocator(trt: Any) -> Any:
    """TensorRT's IOutputAllocator for outputs whose size TensorRT knows only during execution (data-dependent
    shapes: NonZero, NMS; shapes from shape-tensor values). TensorRT calls reallocate_output(_async) when it knows
    the size and notify_shape with the shape; buffers grow and are kept between runs. TensorRT's wrapper prints and
    swallows exceptions from these methods (returning no memory), so a failure is kept for `raise_failure()`."""
    base = trt.IOutputAllocator

    class OutputAllocator(base):
        def __init__(self) -> None:
            base.__init__(self)
            self.buffers: dict[str, trt_cuda.DeviceBuffer] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.failure: Exception | None = None

        def reallocate_output(self, tensor_name: str, memory: int, size: int, alignment: int) -> int:
            try:
                buf = self.buffers.get(tensor_name)
                if buf is None or buf.nbytes < size:
                    if buf is not None:
                        buf.free()
                    buf = self.buffers[tensor_name] = trt_cuda.DeviceBuffer(size)  # cudaMalloc: 256-byte aligned
                return buf.ptr
            except Exception as e:  # noqa: BLE001 - kept and raised after the enqueue (see the docstring)
                self.failure = e
                return 0

        def reallocate_output_async(self, tensor_name: str, memory: int, size: int, alignment: int,
                                    stream: int) -> int:
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

        def raise_failure(self) -> None:
            if self.failure is not None:
                e, self.failure = self.failure, None
                detail = e.message if isinstance(e, EdgeDeployError) else f"{type(e).__name__}: {e}"
                raise EdgeDeployError(f"allocating a data-dependent output failed: {detail}") from e

        def free(self) -> None:
            for buf in self.buffers.values():
                buf.free()
            self.buffers = {}

    return OutputAllocator()


def load_plan(plan_path: Path) -> TensorRTRunner:
    """Check the plan's manifest against this machine BEFORE deserializing, then load it."""
    manifest, mpath = trt_manifest.read_manifest(plan_path)
    problem = trt_manifest.plan_file_problem(manifest, mpath)
    if problem:
        raise EdgeDeployError(problem, where=str(mpath), fix="rebuild the plan")
    trt = _import_trt()
    gpu = trt_cuda.device_info()
    trt_manifest.ensure_plan_compatible(manifest, trt.__version__, gpu["compute_capability"], where=plan_path)
    return TensorRTRunner(mpath.with_name(manifest["plan"]), manifest, gpu)


class TensorRTRunner:
    """Runs a plan through the I/O tensor API (set_input_shape, set_tensor_address, execute_async_v3) with
    device and pinned host buffers from cuda-python, sized for the profile's maximum shapes."""

    def __init__(self, plan_path: Path, manifest: dict[str, Any], gpu: dict[str, Any]):
        trt = self.trt = _import_trt()
        self.device: dict[str, trt_cuda.DeviceBuffer] = {}
        self.host: dict[str, trt_cuda.PinnedBuffer] = {}
        self.stream: trt_cuda.Stream | None = None
        self.allocator: Any = None
        self.logger = process_logger(trt)
        mark = self.logger.mark()
        self.runtime = trt.Runtime(self.logger)
        if manifest.get("compatibility", {}).get("version_compatible"):
            self.runtime.engine_host_code_allowed = True  # a plan we built (its manifest and hash checked)
        device = manifest.get("device", {})
        if device.get("type") == "DLA":
            self.runtime.DLA_core = int(device["dla_core"])
        self.engine = self.runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
        if self.engine is None:
            raise EdgeDeployError(f"TensorRT cannot load the plan{_last_error(self.logger, mark)}",
                                  where=str(plan_path), fix="rebuild the engine on this machine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self.dtypes = {n: numpy_dtype(trt, self.engine.get_tensor_dtype(n), n, plan_path) for n in names}
        # shape tensors (e.g. a Reshape's target shape): TensorRT reads their values on the host, never on the GPU
        self.shape_inputs = {n for n in self.input_names if self.engine.is_shape_inference_io(n)}
        self.ranges: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for n in self.input_names:
            shape = tuple(int(d) for d in self.engine.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                lo, _, hi = self.engine.get_tensor_profile_shape(n, 0)
                self.ranges[n] = (tuple(int(d) for d in lo), tuple(int(d) for d in hi))
            else:
                self.ranges[n] = (shape, shape)
        for n in self.input_names:  # size every buffer for the largest shapes
            if not self.context.set_input_shape(n, self.ranges[n][1]):
                raise EdgeDeployError(f"TensorRT refused the profile's largest shape {list(self.ranges[n][1])} for "
                                      f"input {n!r}{_last_error(self.logger, mark)}", where=str(plan_path))
        max_shapes = {n: self.ranges[n][1] for n in self.input_names}
        # outputs whose shape is known only after execution (NonZero, NMS) or from shape-tensor values get their
        # memory from an IOutputAllocator when TensorRT knows the size
        self.allocated: list[str] = []
        for n in self.output_names:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                self.allocated.append(n)
            else:
                max_shapes[n] = shape
        self.stream = trt_cuda.Stream()
        try:
            if self.allocated:
                self.allocator = _output_allocator(trt)
                for n in self.allocated:
                    if not self.context.set_output_allocator(n, self.allocator):
                        raise EdgeDeployError(f"TensorRT refused an output allocator for {n!r}"
                                              f"{_last_error(self.logger, mark)}", where=str(plan_path))
            for n, shape in max_shapes.items():
                nbytes = int(np.prod(shape, dtype=np.int64)) * self.dtypes[n].itemsize
                self.host[n] = trt_cuda.PinnedBuffer(nbytes)
                if n in self.shape_inputs:  # host memory: TensorRT reads the values when it enqueues
                    address = self.host[n].ptr
                else:
                    self.device[n] = trt_cuda.DeviceBuffer(nbytes)
                    address = self.device[n].ptr
                if not self.context.set_tensor_address(n, address):
                    raise EdgeDeployError(f"TensorRT refused the device address of tensor {n!r}"
                                          f"{_last_error(self.logger, mark)}", where=str(plan_path),
                                          fix="rebuild the engine on this machine; rerun with --debug")
        except BaseException:
            self.close()
            raise
        self.manifest = manifest
        dla = f", DLA core {device.get('dla_core')}" if device.get("type") == "DLA" else ""
        self.conditions = {
            "backend": "tensorrt",
            "version": trt.__version__,
            "device": f"{gpu['name']}{dla}",
            "compute_capability": gpu["compute_capability"],
            "precision": manifest.get("precision"),
            "strongly_typed": manifest.get("flags", {}).get("strongly_typed"),
            "hardware_compatibility": manifest.get("compatibility", {}).get("hardware"),
            "version_compatible": manifest.get("compatibility", {}).get("version_compatible"),
            "cuda_driver": gpu.get("cuda_driver"),
            "timing": "host clock around synchronous runs (H2D + GPU compute + D2H); benchmark() splits them "
                      "with CUDA events",
        }

    # ----------------------------------------------------------------------------------------------------- run
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise UsageError(f"missing inputs {missing} for the TensorRT plan", fix=f"give {self.input_names}")
        data = [n for n in self.input_names if n not in self.shape_inputs] or self.input_names
        batch = int(np.shape(feeds[data[0]])[0]) if np.ndim(feeds[data[0]]) else 1
        lo = max(self.ranges[n][0][0] for n in data) if batch else 1
        hi = min(self.ranges[n][1][0] for n in data) if batch else 1
        if lo <= batch <= hi or not all(np.ndim(feeds[n]) for n in data) or self.shape_inputs:
            return self._run_once(feeds)  # a shape tensor's values describe the whole batch: never split it
        return self._run_chunked(feeds, batch, lo, hi)

    def _run_chunked(self, feeds: dict[str, np.ndarray], batch: int, lo: int, hi: int) -> dict[str, np.ndarray]:
        """A batch outside the profile's leading-dimension range runs in chunks of the largest allowed batch,
        the last one padded up to the smallest; outputs are concatenated and trimmed."""
        parts: dict[str, list[np.ndarray]] = {n: [] for n in self.output_names}
        for start in range(0, batch, hi):
            chunk = {n: np.asarray(v)[start:start + hi] for n, v in feeds.items() if n in self.input_names}
            real = len(chunk[self.input_names[0]])
            if real < lo:
                chunk = {n: np.concatenate([v, np.repeat(v[-1:], lo - real, axis=0)]) for n, v in chunk.items()}
            out = self._run_once(chunk)
            for n, v in out.items():
                if v.shape[:1] != (len(chunk[self.input_names[0]]),):
                    raise EdgeDeployError(f"cannot split a batch of {batch} over this engine's batch range "
                                          f"{lo}..{hi}: output {n!r} has shape {list(v.shape)} (batch not first)",
                                          fix="rebuild with tensorrt.profiles covering the batch size")
                parts[n].append(v[:real])
        return {n: np.concatenate(v) for n, v in parts.items()}

    def _stage_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, int]:
        nbytes = {}
        for n in self.input_names:
            arr = np.ascontiguousarray(feeds[n], dtype=self.dtypes[n])
            lo, hi = self.ranges[n]
            if arr.ndim != len(hi) or any(not a <= d <= b for a, d, b in zip(lo, arr.shape, hi)):
                raise UsageError(f"input {n!r} shape {list(arr.shape)} is outside the plan's profile "
                                 f"{list(lo)}..{list(hi)}", fix="rebuild with tensorrt.profiles covering it")
            mark = self.logger.mark()
            if not self.context.set_input_shape(n, arr.shape):
                raise EdgeDeployError(f"TensorRT refused shape {list(arr.shape)} for input {n!r}"
                                      f"{_last_error(self.logger, mark)}")
            self.host[n].view(arr.dtype, arr.size)[:] = arr.ravel()
            if n not in self.shape_inputs:  # shape tensors stay in host memory
                nbytes[n] = arr.nbytes
        return nbytes

    def _output_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of the outputs with their own buffers (the allocator's are known after execution)."""
        return {n: tuple(int(d) for d in self.context.get_tensor_shape(n)) for n in self.output_names
                if n not in self.allocated}

    def _enqueue(self, in_bytes: dict[str, int], out_shapes: dict[str, tuple[int, ...]],
                 events: list[trt_cuda.Event] | None = None, graph: trt_cuda.Graph | None = None) -> float:
        """Queue copies in, the engine and copies out on the stream; returns the host time (ms) the engine's
        enqueue call took (trtexec's "Enqueue Time")."""
        if events:
            events[0].record(self.stream)
        for n, nb in in_bytes.items():
            trt_cuda.copy_h2d(self.device[n], self.host[n].ptr, nb, self.stream)
        if events:
            events[1].record(self.stream)
        mark = self.logger.mark()
        start = time.perf_counter()
        if graph is not None:
            graph.launch()  # the captured enqueueV3: one launch
            ok = True
        else:
            ok = self.context.execute_async_v3(self.stream.handle)
        enqueue_ms = (time.perf_counter() - start) * 1e3
        if self.allocator is not None:
            self.allocator.raise_failure()  # TensorRT's wrapper swallows exceptions raised in the allocator
        if not ok:
            raise EdgeDeployError(f"TensorRT execution failed{_last_error(self.logger, mark)}")
        if events:
            events[2].record(self.stream)
        for n in self.allocated:  # TensorRT has told their shapes (notify_shape) by the time enqueue returns
            if n not in self.allocator.shapes:
                raise EdgeDeployError(f"TensorRT did not report the shape of output {n!r}"
                                      f"{_last_error(self.logger, mark)}")
            out_shapes[n] = self.allocator.shapes[n]
            nb = int(np.prod(out_shapes[n], dtype=np.int64)) * self.dtypes[n].itemsize
            if n not in self.host or self.host[n].nbytes < nb:
                if n in self.host:
                    self.host[n].free()
                self.host[n] = trt_cuda.PinnedBuffer(nb)
        for n, shape in out_shapes.items():
            nb = int(np.prod(shape, dtype=np.int64)) * self.dtypes[n].itemsize
            source = self.allocator.buffers[n] if n in self.allocated else self.device[n]
            trt_cuda.copy_d2h(self.host[n].ptr, source, nb, self.stream)
        if events:
            events[3].record(self.stream)
        return enqueue_ms

    def _run_once(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        in_bytes = self._stage_inputs(feeds)
        shapes = self._output_shapes()
        self._enqueue(in_bytes, shapes)
        self.stream.synchronize()
        return {n: self.host[n].view(self.dtypes[n], int(np.prod(s, dtype=np.int64))).reshape(s).copy()
                for n, s in shapes.items()}

    def capture_graph(self) -> tuple[trt_cuda.Graph | None, str]:
        """Capture the engine's enqueueV3 (inputs already staged) in a CUDA graph, as trtexec --useCudaGraph: one
        plain enqueue first (TensorRT's guidance: it finishes deferred work that must not be captured), then the
        capture. Capture fails for engines whose enqueue must wait or allocate (data-dependent shapes, some plugins
        and DLA engines); then (None, why) and the caller runs without a graph, as trtexec falls back."""
        self.context.execute_async_v3(self.stream.handle)
        self.stream.synchronize()
        mark = self.logger.mark()
        try:
            graph = trt_cuda.Graph(self.stream)
        except EdgeDeployError as e:
            return None, e.message
        ok = self.context.execute_async_v3(self.stream.handle)
        try:
            graph.end()
        except EdgeDeployError as e:
            graph.destroy()
            return None, (f"TensorRT's enqueue could not be captured{_last_error(self.logger, mark)}" if not ok
                          else e.message)
        if not ok:
            graph.destroy()
            return None, f"TensorRT's enqueue failed during capture{_last_error(self.logger, mark)}"
        return graph, "captured"

    def benchmark(self, feeds: dict[str, np.ndarray], warmup: int = 20, iterations: int = 200,
                  spin_wait: bool = False, cuda_graph: bool = False) -> dict[str, Any]:
        """trtexec-style timing of one batch: CUDA-event H2D, GPU compute, D2H and their sum, the host time of the
        engine's enqueue call, plus host wall time; min/mean/median/p90/p95/p99/max each, and whether the series
        is unstable. `spin_wait` waits by polling the stream (trtexec --useSpinWait) instead of blocking;
        `cuda_graph` launches a captured CUDA graph of the enqueue (trtexec --useCudaGraph), falling back to plain
        enqueues, with the reason in `cuda_graph`, when the capture fails."""
        in_bytes = self._stage_inputs(feeds)
        shapes = self._output_shapes()
        graph, graph_note = self.capture_graph() if cuda_graph else (None, "off")
        events = [trt_cuda.Event() for _ in range(4)]
        series: dict[str, list[float]] = {"h2d": [], "gpu_compute": [], "d2h": [], "latency": [], "enqueue": [],
                                          "host_wall": []}
        wait = self.stream.spin_wait if spin_wait else self.stream.synchronize
        try:
            for i in range(warmup + iterations):
                start = time.perf_counter()
                enqueue_ms = self._enqueue(in_bytes, shapes, events, graph)
                wait()
                wall = (time.perf_counter() - start) * 1e3
                if i < warmup:
                    continue
                series["enqueue"].append(enqueue_ms)
                series["h2d"].append(events[1].ms_since(events[0]))
                series["gpu_compute"].append(events[2].ms_since(events[1]))
                series["d2h"].append(events[3].ms_since(events[2]))
                series["latency"].append(events[3].ms_since(events[0]))
                series["host_wall"].append(wall)
        finally:
            for e in events:
                e.destroy()
            if graph is not None:
                graph.destroy()
        batch = int(np.shape(feeds[self.input_names[0]])[0]) if np.ndim(feeds[self.input_names[0]]) else 1
        stats = {k: summarize_ms(v) for k, v in series.items()}
        if cuda_graph and graph is None:
            graph_note = f"fallback (no graph): {graph_note}"
        return {"batch": batch, "warmup": warmup, "iterations": iterations, "spin_wait": spin_wait,
                "cuda_graph": graph_note, **stats,
                "throughput_per_s": batch * 1e3 / stats["host_wall"]["median_ms"]}

    def profile_layers(self, feeds: dict[str, np.ndarray], iterations: int = 20) -> list[dict[str, Any]]:
        """Per-layer GPU times through TensorRT's IProfiler (trtexec --dumpProfile): TensorRT reports each layer's
        time after the stream is synchronized (enqueue_emits_profile off, report_to_profiler after each run, so the
        enqueue stays asynchronous). Layers by median time, slowest first, with their share of the total."""
        times: dict[str, list[float]] = collections.defaultdict(list)
        base = self.trt.IProfiler

        class LayerProfiler(base):
            def __init__(self) -> None:
                base.__init__(self)

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                times[str(layer_name)].append(float(ms))

        profiler = LayerProfiler()
        in_bytes = self._stage_inputs(feeds)
        shapes = self._output_shapes()
        self.context.enqueue_emits_profile = False
        self.context.profiler = profiler
        try:
            for _ in range(iterations):
                self._enqueue(in_bytes, dict(shapes))
                self.stream.synchronize()
                if not self.context.report_to_profiler():
                    raise EdgeDeployError("TensorRT could not report layer times (report_to_profiler returned False)",
                                          fix="build the engine with profiling verbosity DETAILED (edgedeploy does)")
        finally:
            self.context.profiler = None
        medians = {name: summarize_ms(values)["median_ms"] for name, values in times.items()}
        total = sum(medians.values()) or 1.0
        return [{"layer": name, "median_ms": ms, "share": ms / total, "runs": len(times[name])}
                for name, ms in sorted(medians.items(), key=lambda kv: -kv[1])]

    def close(self) -> None:
        for buf in [*self.device.values(), *self.host.values()]:
            buf.free()
        self.device, self.host = {}, {}
        if getattr(self, "allocator", None) is not None:
            self.allocator.free()
        if getattr(self, "stream", None) is not None:
            self.stream.destroy()
            self.stream = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


__all__ = ["TensorRTBackend", "TensorRTRunner", "apply_plan", "install_hint", "load_plan", "numpy_dtype",
           "probe_runtime", "process_logger"]
