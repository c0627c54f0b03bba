"""What the stand-in's TensorRT calls do: the documented semantics of the calls edgedeploy makes, modelled on CPU.

Each behaviour follows TensorRT's headers, binding sources and documentation (named where it matters); nothing
computes a model. The parser reads the ONNX file's inputs, outputs and nodes with `onnx`; the builder checks what a
real build requires (a profile for every dynamic input, DLA rules, compatibility levels, the calibrator protocol)
and serializes a small JSON description that says it is not an engine; the runtime loads only that, checking
version, device and DLA core like a real plan; an execution checks every binding (live, large enough, 256-byte
aligned device memory; a live stream handle; input shapes inside the profile) and then writes a *marker*, not a
result: every element of output sample b is the sum of sample b of the first input (so tests can follow data through
copies, chunking and padding).

Failure switches on `Model` turn on the documented failure returns: `timing_cache_none` (create_timing_cache returns
None), `tensor_address_false` (set_tensor_address returns False), `parser_error` (parse_from_file fails with that
error), `build_fails` (build_serialized_network returns None), `execute_fails` (execute_async_v3 returns False); each
logs an error through the process logger first, as TensorRT does.
"""

from __future__ import annotations

import ctypes
import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cuda import CudaStandIn
from .generate import NotModelled, build_module

BLOB_MAGIC = b"EDGEDEPLOY-TRT-STANDIN\n"  # a stand-in "plan": a description, never an engine
CACHE_MAGIC = b"EDGEDEPLOY-TRT-STANDIN-TIMING-CACHE\n"
_ONNX_DTYPES = {"FLOAT": "FLOAT", "FLOAT16": "HALF", "BFLOAT16": "BF16", "INT8": "INT8", "INT32": "INT32",
                "INT64": "INT64", "BOOL": "BOOL", "UINT8": "UINT8", "FLOAT8E4M3FN": "FP8", "INT4": "INT4"}
_ITEMSIZE = {"FLOAT": 4, "HALF": 2, "BF16": 2, "INT8": 1, "INT32": 4, "INT64": 8, "BOOL": 1, "UINT8": 1, "FP8": 1}
_LAYER_TYPES = {"Conv": "CONVOLUTION", "ConvTranspose": "DECONVOLUTION", "Relu": "ACTIVATION",
                "LeakyRelu": "ACTIVATION", "Sigmoid": "ACTIVATION", "Tanh": "ACTIVATION", "Clip": "ACTIVATION",
                "Add": "ELEMENTWISE", "Mul": "ELEMENTWISE", "Sub": "ELEMENTWISE", "Div": "ELEMENTWISE",
                "MaxPool": "POOLING", "AveragePool": "POOLING", "GlobalAveragePool": "REDUCE",
                "Concat": "CONCATENATION", "Reshape": "SHUFFLE", "Transpose": "SHUFFLE", "Flatten": "SHUFFLE",
                "Resize": "RESIZE", "Gemm": "MATRIX_MULTIPLY", "MatMul": "MATRIX_MULTIPLY", "Softmax": "SOFTMAX",
                "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE", "Cast": "CAST",
                "Identity": "IDENTITY", "Slice": "SLICE", "Split": "SLICE", "Constant": "CONSTANT",
                "NonMaxSuppression": "NMS", "NonZero": "NON_ZERO", "Expand": "SLICE"}
_SHAPE_OPERANDS = {"Reshape": 1, "Expand": 1}  # op → the input index TensorRT reads as a shape tensor

REGISTRY: dict[str, Any] = {}
STORED = {  # properties that just keep what is set (with TensorRT's defaults set at creation)
    "IBuilderConfig.builder_optimization_level", "IBuilderConfig.profiling_verbosity",
    "IBuilderConfig.default_device_type", "IBuilderConfig.DLA_core", "IBuilderConfig.hardware_compatibility_level",
    "Runtime.DLA_core", "Runtime.engine_host_code_allowed", "IExecutionContext.profiler",
    "IExecutionContext.enqueue_emits_profile",
}


def on(*keys: str):
    """Register a behaviour for `Class.member` (methods), `Class.prop:get` / `:set` (properties)."""
    def register(fn):
        for key in keys:
            REGISTRY[key] = fn
        return fn
    return register


@dataclass
class Model:
    """One stand-in TensorRT: its surface, the CPU CUDA stand-in, failure switches and what happened."""

    surface: dict[str, Any]
    cuda: CudaStandIn
    dla_cores: int = 0
    dla_unsupported: frozenset[str] = frozenset({"RESIZE"})
    timing_cache_none: bool = False
    tensor_address_false: bool = False
    parser_error: tuple[int, str, str] | None = None  # (node index, ErrorCode member, description)
    build_fails: str | None = None
    execute_fails: str | None = None
    logger: Any = None  # the process-wide logger: the first one TensorRT was given
    messages: list[tuple[str, str]] = field(default_factory=list)
    calls: list[tuple] = field(default_factory=list)
    executions: int = 0
    trt: Any = None

    def __post_init__(self) -> None:
        behaviours = {k: functools.partial(fn, self) for k, fn in REGISTRY.items()}
        functions = {name: functools.partial(fn, self) for name, fn in _FUNCTIONS.items()}
        self.trt = build_module(self.surface, behaviours, STORED, functions)

    @property
    def version(self) -> str:
        return self.surface["tensorrt"]["version"]

    @property
    def major(self) -> int:
        return self.surface["tensorrt"]["major"]

    def member(self, enum: str, name: str) -> Any:
        owner = self.trt
        for part in enum.split("."):
            owner = getattr(owner, part)
        return owner.__members__[name]

    def log(self, severity: str, msg: str) -> None:
        """A message to the process logger, as TensorRT sends it (exceptions in log() are printed, not raised:
        the binding's trampoline catches them)."""
        self.messages.append((severity, msg))
        if self.logger is None:
            return
        try:
            self.logger.log(self.member("ILogger.Severity", severity), msg)
        except Exception as e:  # noqa: BLE001 - what the trampoline does
            print(f"[ERROR] Exception caught in log(): {e}", file=sys.stderr)

    def register_logger(self, logger: Any, where: str) -> None:
        """TensorRT's logger is a process-wide singleton (TensorRT Python API docs, Logger: "the logger is internally
        considered a singleton, and thus multiple instances of Runtime and/or Builder must all use the same logger"):
        messages keep going to the first one."""
        _expect(logger, self.trt.ILogger, where, "logger")
        if self.logger is None:
            self.logger = logger
        elif logger is not self.logger:
            self.messages.append(("WARNING", f"{where}: a different logger was given; TensorRT keeps using the "
                                             f"first one"))

    def call_back(self, obj: Any, name: str, *args: Any) -> tuple[bool, Any]:
        """TensorRT calling a Python override through its trampoline: exceptions are printed to stderr and swallowed
        (the binding's catch blocks), reported here as (False, None)."""
        try:
            return True, getattr(obj, name)(*args)
        except Exception as e:  # noqa: BLE001 - what the trampoline does
            print(f"[ERROR] Exception caught in {name}(): {e}", file=sys.stderr)
            return False, None


def _expect(value: Any, cls: type, where: str, arg: str, none_ok: bool = False) -> None:
    """pybind11's type check of an argument bound as a C++ reference (None refused) or pointer (None allowed)."""
    if value is None and none_ok:
        return
    if not isinstance(value, cls):
        raise TypeError(f"{where}(): incompatible function arguments: {arg} must be tensorrt.{cls.__name__}, "
                        f"not {type(value).__name__}")


def _dims(m: Model, shape: Any) -> Any:
    return m.trt.Dims._make(dims=tuple(int(d) for d in shape))


def _shape(value: Any) -> tuple[int, ...]:
    if hasattr(value, "_state") and "dims" in value._state:
        return value._state["dims"]
    return tuple(int(d) for d in value)


# --------------------------------------------------------------------------------------------------- basics

@on("Dims.__init__")
def _dims_init(m: Model, self: Any, shape: Any = ()) -> None:
    self._state["dims"] = tuple(int(d) for d in shape)


@on("Dims.__len__")
def _dims_len(m: Model, self: Any) -> int:
    return len(self._state["dims"])


@on("Dims.__getitem__")
def _dims_getitem(m: Model, self: Any, index: Any) -> Any:
    return self._state["dims"][index]


@on("Dims.__eq__")
def _dims_eq(m: Model, self: Any, other: Any) -> bool:
    return tuple(self._state["dims"]) == tuple(other)


@on("Dims.__str__", "Dims.__repr__")
def _dims_str(m: Model, self: Any) -> str:
    return str(tuple(self._state["dims"]))


@on("ErrorCode.__str__", "ErrorCode.__repr__")
def _error_code_str(m: Model, self: Any) -> str:
    return self.name


@on("ILogger.__init__", "IInt8Calibrator.__init__", "IInt8EntropyCalibrator2.__init__",
    "IInt8MinMaxCalibrator.__init__", "IInt8EntropyCalibrator.__init__", "IInt8LegacyCalibrator.__init__",
    "IOutputAllocator.__init__", "IProfiler.__init__")
def _plain_init(m: Model, self: Any) -> None:
    pass


@on("Logger.__init__")
def _logger_init(m: Model, self: Any, min_severity: Any = None) -> None:
    self._state["min"] = min_severity if min_severity is not None else m.member("ILogger.Severity", "WARNING")


@on("Logger.log")
def _logger_log(m: Model, self: Any, severity: Any, msg: str) -> None:
    if int(severity) <= int(self._state["min"]):
        print(f"[TRT] {severity.name}: {msg}")


@on("ILogger.log")
def _pure_log(m: Model, self: Any, severity: Any, msg: str) -> None:
    raise RuntimeError('Tried to call pure virtual function "ILogger::log"')


def _nptype(m: Model, trt_type: Any) -> Any:
    """The package's nptype: the surface's mapping; TypeError for types numpy has no equivalent of."""
    name = trt_type.name if hasattr(trt_type, "name") else None
    np_name = m.surface["python"]["nptype"].get(name)
    if np_name is None:
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
    return getattr(np, np_name if np_name != "bool" else "bool_")


def _volume(m: Model, iterable: Any) -> int:
    out = 1
    for d in iterable:
        out *= d
    return out


_FUNCTIONS = {"nptype": _nptype, "volume": _volume}


# -------------------------------------------------------------------------------------------------- builder

@on("Builder.__init__")
def _builder_init(m: Model, self: Any, logger: Any) -> None:
    m.register_logger(logger, "Builder.__init__")


@on("Builder.num_DLA_cores:get", "Runtime.num_DLA_cores:get")
def _num_dla(m: Model, self: Any) -> int:
    return m.dla_cores


@on("Builder.create_network")
def _create_network(m: Model, self: Any, flags: int = 0) -> Any:
    flags = int(flags)
    names = [n for n, v in m.trt.NetworkDefinitionCreationFlag.__members__.items() if flags & (1 << int(v))]
    known = sum(1 << int(v) for v in m.trt.NetworkDefinitionCreationFlag.__members__.values())
    if flags & ~known:
        raise ValueError(f"unknown NetworkDefinitionCreationFlag bits in {flags}")
    m.calls.append(("create_network", tuple(names)))
    return m.trt.INetworkDefinition._make(flags=set(names), inputs=[], outputs=[], layers=[], parsed=None)


@on("Builder.create_builder_config")
def _create_config(m: Model, self: Any) -> Any:
    props = {"builder_optimization_level": 3, "profiling_verbosity": m.member("ProfilingVerbosity",
                                                                             "LAYER_NAMES_ONLY"),
             "default_device_type": m.member("DeviceType", "GPU"), "DLA_core": -1}
    if hasattr(m.trt, "HardwareCompatibilityLevel"):  # 8.6+
        props["hardware_compatibility_level"] = m.member("HardwareCompatibilityLevel", "NONE")
    # BuilderFlag.TF32 is "Enabled by default" (NvInfer.h)
    return m.trt.IBuilderConfig._make(props=props, flags={"TF32"}, pools={}, profiles=[], cache=None,
                                      calibrator=None, calibration_profile=None)


@on("Builder.create_optimization_profile")
def _create_profile(m: Model, self: Any) -> Any:
    return m.trt.IOptimizationProfile._make(shapes={})


@on("IOptimizationProfile.set_shape")
def _set_shape(m: Model, self: Any, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002
    shapes = [tuple(int(d) for d in s) for s in (min, opt, max)]
    lo, mid, hi = shapes
    # the binding raises RuntimeError("Shape provided for ... is inconsistent with other shapes.")
    if len({len(s) for s in shapes}) != 1 or any(not a <= b <= c for a, b, c in zip(lo, mid, hi)) \
            or any(d < 0 for d in lo):
        raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
    self._state["shapes"][str(input)] = shapes


@on("IOptimizationProfile.get_shape")
def _get_shape(m: Model, self: Any, input: str) -> list:  # noqa: A002
    return [_dims(m, s) for s in self._state["shapes"].get(input, [])]


@on("IOptimizationProfile.__bool__", "IOptimizationProfile.__nonzero__")
def _profile_valid(m: Model, self: Any) -> bool:
    return bool(self._state["shapes"])


# ---------------------------------------------------------------------------------------------------- config

def _flag_name(m: Model, flag: Any, enum: str = "BuilderFlag") -> str:
    _expect(flag, getattr(m.trt, enum), f"{enum} argument", "flag")
    return flag.name


@on("IBuilderConfig.set_flag")
def _config_set_flag(m: Model, self: Any, flag: Any) -> None:
    self._state["flags"].add(_flag_name(m, flag))


@on("IBuilderConfig.clear_flag")
def _config_clear_flag(m: Model, self: Any, flag: Any) -> None:
    self._state["flags"].discard(_flag_name(m, flag))


@on("IBuilderConfig.get_flag")
def _config_get_flag(m: Model, self: Any, flag: Any) -> bool:
    return _flag_name(m, flag) in self._state["flags"]


@on("IBuilderConfig.set_memory_pool_limit")
def _pool_limit(m: Model, self: Any, pool: Any, pool_size: int) -> None:
    _expect(pool, m.trt.MemoryPoolType, "set_memory_pool_limit", "pool")
    if int(pool_size) < 0:
        raise ValueError("pool_size must be non-negative")
    self._state["pools"][pool.name] = int(pool_size)


@on("IBuilderConfig.get_memory_pool_limit")
def _get_pool_limit(m: Model, self: Any, pool: Any) -> int:
    return self._state["pools"].get(pool.name, m.cuda.total_memory)


@on("IBuilderConfig.add_optimization_profile")
def _add_profile(m: Model, self: Any, profile: Any) -> int:
    _expect(profile, m.trt.IOptimizationProfile, "add_optimization_profile", "profile")
    if not profile._state["shapes"]:
        m.log("ERROR", "IBuilderConfig::addOptimizationProfile: the profile is not valid")
        return -1
    self._state["profiles"].append({k: list(v) for k, v in profile._state["shapes"].items()})
    return len(self._state["profiles"]) - 1


@on("IBuilderConfig.num_optimization_profiles:get")
def _num_profiles(m: Model, self: Any) -> int:
    return len(self._state["profiles"])


@on("IBuilderConfig.can_run_on_DLA")
def _can_run_on_dla(m: Model, self: Any, layer: Any) -> bool:
    _expect(layer, m.trt.ILayer, "can_run_on_DLA", "layer")
    return layer._state["type"] not in m.dla_unsupported


@on("IBuilderConfig.int8_calibrator:get")
def _get_calibrator(m: Model, self: Any) -> Any:
    return self._state["calibrator"]


@on("IBuilderConfig.int8_calibrator:set")
def _set_calibrator(m: Model, self: Any, value: Any) -> None:
    _expect(value, m.trt.IInt8Calibrator, "int8_calibrator", "value", none_ok=True)
    self._state["calibrator"] = value


@on("IBuilderConfig.set_calibration_profile")
def _set_calibration_profile(m: Model, self: Any, profile: Any) -> bool:
    _expect(profile, m.trt.IOptimizationProfile, "set_calibration_profile", "profile", none_ok=True)
    self._state["calibration_profile"] = None if profile is None else dict(profile._state["shapes"])
    return True


@on("IBuilderConfig.create_timing_cache")
def _create_timing_cache(m: Model, self: Any, serialized_timing_cache: Any) -> Any:
    data = bytes(memoryview(serialized_timing_cache))
    if m.timing_cache_none:
        m.log("ERROR", "IBuilderConfig::createTimingCache: the serialized timing cache could not be read")
        return None
    if not data:
        return m.trt.ITimingCache._make(version=m.version, device=m.cuda.compute_capability, entries=0)
    if not data.startswith(CACHE_MAGIC):
        m.log("ERROR", "IBuilderConfig::createTimingCache: the serialized timing cache is invalid (corrupt, or "
                       "from another TensorRT)")
        return None
    info = json.loads(data[len(CACHE_MAGIC):])
    return m.trt.ITimingCache._make(version=info["version"], device=tuple(info["device"]), entries=info["entries"])


@on("IBuilderConfig.set_timing_cache")
def _set_timing_cache(m: Model, self: Any, cache: Any, ignore_mismatch: bool) -> bool:
    # setTimingCache(ITimingCache const& cache, bool ignoreMismatch): a reference, so None is a TypeError
    _expect(cache, m.trt.ITimingCache, "set_timing_cache", "cache")
    st = cache._state
    if not ignore_mismatch and (st["version"] != m.version or tuple(st["device"]) != m.cuda.compute_capability):
        m.log("WARNING", "IBuilderConfig::setTimingCache: the cache was made on another device or TensorRT version")
        return False
    self._state["cache"] = cache
    return True


@on("IBuilderConfig.get_timing_cache")
def _get_timing_cache(m: Model, self: Any) -> Any:
    return self._state["cache"]


@on("ITimingCache.combine")
def _combine_cache(m: Model, self: Any, input_cache: Any, ignore_mismatch: bool) -> bool:
    other = input_cache._state
    if not ignore_mismatch and (other["version"] != self._state["version"]
                                or tuple(other["device"]) != tuple(self._state["device"])):
        return False
    self._state["entries"] += other["entries"]
    return True


@on("ITimingCache.serialize")
def _serialize_cache(m: Model, self: Any) -> Any:
    st = self._state
    body = json.dumps({"version": st["version"], "device": list(st["device"]), "entries": st["entries"]})
    return m.trt.IHostMemory._make(CACHE_MAGIC + body.encode())


@on("IHostMemory.nbytes:get")
def _host_memory_nbytes(m: Model, self: Any) -> int:
    return len(self)


# ---------------------------------------------------------------------------------------------------- parser

@on("OnnxParser.__init__")
def _parser_init(m: Model, self: Any, network: Any, logger: Any) -> None:
    _expect(network, m.trt.INetworkDefinition, "OnnxParser.__init__", "network")
    m.register_logger(logger, "OnnxParser.__init__")
    self._state.update(network=network, errors=[], flags=set())


@on("OnnxParser.set_flag")
def _parser_set_flag(m: Model, self: Any, flag: Any) -> None:
    name = _flag_name(m, flag, "OnnxParserFlag")
    self._state["flags"].add(name)
    m.calls.append(("parser.set_flag", name))


@on("OnnxParser.get_flag")
def _parser_get_flag(m: Model, self: Any, flag: Any) -> bool:
    return _flag_name(m, flag, "OnnxParserFlag") in self._state["flags"]


@on("OnnxParser.num_errors:get")
def _parser_num_errors(m: Model, self: Any) -> int:
    return len(self._state["errors"])


@on("OnnxParser.get_error")
def _parser_get_error(m: Model, self: Any, index: int) -> Any:
    errors = self._state["errors"]
    return errors[index] if 0 <= index < len(errors) else None


@on("OnnxParser.clear_errors")
def _parser_clear_errors(m: Model, self: Any) -> None:
    self._state["errors"].clear()


def _parser_fail(m: Model, parser: Any, node: int, code: str, desc: str, nodes: list) -> bool:
    if code not in m.trt.ErrorCode.__members__:  # 8.x has fewer codes (no UNSUPPORTED_NODE_DATATYPE)
        code = "UNSUPPORTED_NODE"
    name, op = (nodes[node].name, nodes[node].op_type) if 0 <= node < len(nodes) else ("", "")
    err = m.trt.ParserError._make(code=m.member("ErrorCode", code), desc=desc, node=node, node_name=name,
                                  node_operator=op)
    parser._state["errors"].append(err)
    m.log("ERROR", f"ModelImporter: In node {node} with name: {name} and operator: {op}: {code}: {desc}")
    return False


@on("OnnxParser.parse_from_file")
def _parse_from_file(m: Model, self: Any, model: str) -> bool:
    import onnx

    path = Path(model)
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - the parser reports, never raises
        return _parser_fail(m, self, -1, "MODEL_DESERIALIZE_FAILED", f"failed to parse the ONNX file: {e}", [])
    nodes = list(proto.graph.node)
    if m.major == 8 and "EXPLICIT_BATCH" not in self._state["network"]._state["flags"]:
        # TensorRT 8's ONNX parser: "the ONNX parser only supports networks with an explicit batch dimension"
        return _parser_fail(m, self, -1, "INVALID_VALUE", "Network must have explicit batch dimension "
                                                          "(NetworkDefinitionCreationFlag.EXPLICIT_BATCH)", nodes)
    if m.parser_error is not None:
        return _parser_fail(m, self, *m.parser_error, nodes)
    for i, node in enumerate(nodes):
        if node.domain not in ("", "ai.onnx"):
            return _parser_fail(m, self, i, "UNSUPPORTED_NODE", f"No importer registered for op: {node.op_type}",
                                nodes)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - fall back to the declared shapes
        inferred = proto
    initializers = {i.name for i in proto.graph.initializer}
    dtypes = m.trt.DataType.__members__

    def tensor(value: Any, is_input: bool) -> dict | None:
        t = value.type.tensor_type
        onnx_type = onnx.TensorProto.DataType.Name(t.elem_type)
        trt_type = _ONNX_DTYPES.get(onnx_type)
        if trt_type == "INT64" and "INT64" not in dtypes:  # TensorRT 8's parser casts INT64 I/O down to INT32
            m.log("WARNING", f"onnx2trt_utils: {value.name} is INT64; TensorRT {m.version} casts it to INT32")
            trt_type = "INT32"
        if trt_type not in dtypes:
            return None
        dims = []
        for d in t.shape.dim:
            dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None))
        return {"name": value.name, "dims": dims, "dtype": trt_type, "input": is_input}

    network = self._state["network"]
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        t = tensor(value, True)
        if t is None:
            return _parser_fail(m, self, -1, "UNSUPPORTED_NODE_DATATYPE",
                                f"input {value.name} has a type TensorRT {m.version} does not support", nodes)
        network._state["inputs"].append(t)
    for value in inferred.graph.output:
        t = tensor(value, False)
        if t is None:
            return _parser_fail(m, self, -1, "UNSUPPORTED_NODE_DATATYPE",
                                f"output {value.name} has a type TensorRT {m.version} does not support", nodes)
        network._state["outputs"].append(t)
    shape_operands = {node.input[k] for node in nodes for op, k in _SHAPE_OPERANDS.items()
                      if node.op_type == op and len(node.input) > k}
    produced_by = {out: node for node in nodes for out in node.output}
    input_dims = {d for t in network._state["inputs"] for d in t["dims"] if isinstance(d, str)}
    for t in network._state["inputs"]:
        if t["name"] in shape_operands:  # a shape tensor: TensorRT reads its values on the host
            t["shape_input"] = True
    for t in network._state["outputs"]:
        node = produced_by.get(t["name"])
        if node is not None and node.op_type in _SHAPE_OPERANDS and node.input[_SHAPE_OPERANDS[node.op_type]] in \
                {i["name"] for i in network._state["inputs"]}:
            t["shape_from"] = node.input[_SHAPE_OPERANDS[node.op_type]]
        elif any(not isinstance(d, int) and d not in input_dims for d in t["dims"]):
            t["data_dependent"] = True  # NonZero, NonMaxSuppression: the size is known only after execution
    for t in network._state["outputs"]:
        t["network_output"] = True
    graph_outputs = {t["name"]: t for t in network._state["outputs"]}
    known = {v.name: v for v in inferred.graph.value_info}
    for i, node in enumerate(nodes):
        layer_type = _LAYER_TYPES.get(node.op_type)
        if layer_type is None:
            return _parser_fail(m, self, i, "UNSUPPORTED_NODE",
                                f"the conformance stand-in does not model op {node.op_type}", nodes)
        outputs = []
        for name in node.output:  # the layer's output tensors, named like the ONNX tensors (the parser does so)
            spec = graph_outputs.get(name) or (tensor(known[name], False) if name in known else None)
            outputs.append(spec or {"name": name, "dims": [], "dtype": "FLOAT", "input": False, "unknown": True})
            if name in shape_operands:
                outputs[-1]["shape_tensor"] = True
        network._state["layers"].append({"name": node.name or f"{node.op_type}_{i}", "type": layer_type,
                                         "outputs": outputs})
    network._state["parsed"] = {"path": str(path), "parser_flags": sorted(self._state["flags"])}
    return True


@on("ParserError.code")
def _err_code(m: Model, self: Any) -> Any:
    return self._state["code"]


@on("ParserError.desc")
def _err_desc(m: Model, self: Any) -> str:
    return self._state["desc"]


@on("ParserError.node")
def _err_node(m: Model, self: Any) -> int:
    return self._state["node"]


@on("ParserError.node_name")
def _err_node_name(m: Model, self: Any) -> str:
    return self._state["node_name"]


@on("ParserError.node_operator")
def _err_node_operator(m: Model, self: Any) -> str:
    return self._state["node_operator"]


# --------------------------------------------------------------------------------------------------- network

def _tensor(m: Model, t: dict) -> Any:
    return m.trt.ITensor._make(spec=t)


@on("INetworkDefinition.num_inputs:get")
def _num_inputs(m: Model, self: Any) -> int:
    return len(self._state["inputs"])


@on("INetworkDefinition.num_outputs:get")
def _num_outputs(m: Model, self: Any) -> int:
    return len(self._state["outputs"])


@on("INetworkDefinition.num_layers:get")
def _num_layers(m: Model, self: Any) -> int:
    return len(self._state["layers"])


@on("INetworkDefinition.get_input")
def _get_input(m: Model, self: Any, index: int) -> Any:
    items = self._state["inputs"]
    return _tensor(m, items[index]) if 0 <= index < len(items) else None


@on("INetworkDefinition.get_output")
def _get_output(m: Model, self: Any, index: int) -> Any:
    items = self._state["outputs"]
    return _tensor(m, items[index]) if 0 <= index < len(items) else None


@on("INetworkDefinition.get_layer")
def _get_layer(m: Model, self: Any, index: int) -> Any:
    items = self._state["layers"]
    if not 0 <= index < len(items):
        return None
    return m.trt.ILayer._make(name=items[index]["name"], type=items[index]["type"], spec=items[index], network=self)


@on("INetworkDefinition.mark_output")
def _mark_output(m: Model, self: Any, tensor: Any) -> None:
    """markOutput: the tensor becomes a network output (an engine I/O tensor), after the parser's outputs."""
    _expect(tensor, m.trt.ITensor, "mark_output", "tensor")
    spec = tensor._state["spec"]
    if spec.get("unknown"):
        raise NotModelled(f"mark_output of {spec['name']}, whose shape the stand-in could not infer")
    if not spec.get("network_output"):
        spec["network_output"] = True
        self._state["outputs"].append(spec)
        m.calls.append(("mark_output", spec["name"]))


@on("ILayer.num_outputs:get")
def _layer_num_outputs(m: Model, self: Any) -> int:
    return len(self._state["spec"]["outputs"])


@on("ILayer.get_output")
def _layer_get_output(m: Model, self: Any, index: int) -> Any:
    outputs = self._state["spec"]["outputs"]
    return _tensor(m, outputs[index]) if 0 <= index < len(outputs) else None


def _weak_typing_only(m: Model, layer: Any, call: str) -> bool:
    """NvInfer.h: "Strongly-typed networks reject calls to method setPrecision" (and setOutputType): an error is
    logged and nothing is set."""
    if "STRONGLY_TYPED" in layer._state["network"]._state["flags"]:
        m.log("ERROR", f"ILayer::{call}: Error Code 3: API Usage Error (strongly typed network: {call} is not "
                       f"allowed on {layer._state['name']})")
        return False
    return True


@on("ILayer.precision:set")
def _layer_set_precision(m: Model, self: Any, value: Any) -> None:
    _expect(value, m.trt.DataType, "ILayer.precision", "value")
    if _weak_typing_only(m, self, "setPrecision"):
        self._state["spec"]["precision"] = value.name
        m.calls.append(("layer.precision", self._state["name"], value.name))


@on("ILayer.precision:get")
def _layer_get_precision(m: Model, self: Any) -> Any:
    return m.member("DataType", self._state["spec"].get("precision", "FLOAT"))


@on("ILayer.precision_is_set:get")
def _layer_precision_is_set(m: Model, self: Any) -> bool:
    return "precision" in self._state["spec"]


@on("ILayer.set_output_type")
def _layer_set_output_type(m: Model, self: Any, index: int, dtype: Any) -> None:
    _expect(dtype, m.trt.DataType, "set_output_type", "dtype")
    outputs = self._state["spec"]["outputs"]
    if not 0 <= index < len(outputs):
        m.log("ERROR", f"ILayer::setOutputType: {self._state['name']} has no output {index}")
        return
    if _weak_typing_only(m, self, "setOutputType"):
        self._state["spec"].setdefault("output_types", {})[str(index)] = dtype.name
        m.calls.append(("layer.set_output_type", self._state["name"], index, dtype.name))


@on("ITensor.name:get")
def _tensor_name(m: Model, self: Any) -> str:
    return self._state["spec"]["name"]


@on("ITensor.shape:get")
def _tensor_shape(m: Model, self: Any) -> Any:
    return _dims(m, [d if isinstance(d, int) else -1 for d in self._state["spec"]["dims"]])


@on("ITensor.dtype:get")
def _tensor_dtype(m: Model, self: Any) -> Any:
    return m.member("DataType", self._state["spec"]["dtype"])


@on("ITensor.is_network_input:get")
def _tensor_is_input(m: Model, self: Any) -> bool:
    return self._state["spec"]["input"]


@on("ITensor.is_network_output:get")
def _tensor_is_output(m: Model, self: Any) -> bool:
    return bool(self._state["spec"].get("network_output"))


@on("ITensor.is_shape_tensor:get")
def _tensor_is_shape(m: Model, self: Any) -> bool:
    return bool(self._state["spec"].get("shape_tensor") or self._state["spec"].get("shape_input"))


@on("ILayer.name:get")
def _layer_name(m: Model, self: Any) -> str:
    return self._state["name"]


@on("ILayer.type:get")
def _layer_type(m: Model, self: Any) -> Any:
    return m.member("LayerType", self._state["type"])


# ----------------------------------------------------------------------------------------------------- build

class _BuildError(Exception):
    pass


@on("Builder.build_serialized_network")
def _build(m: Model, self: Any, network: Any, config: Any, kernel_text: Any = None) -> Any:
    _expect(network, m.trt.INetworkDefinition, "build_serialized_network", "network")
    _expect(config, m.trt.IBuilderConfig, "build_serialized_network", "config")
    try:
        blob = _plan_blob(m, network, config)
    except _BuildError as e:
        m.log("ERROR", str(e))
        return None
    return m.trt.IHostMemory._make(BLOB_MAGIC + json.dumps(blob).encode())


def _plan_blob(m: Model, network: Any, config: Any) -> dict:
    net, cfg = network._state, config._state
    if net["parsed"] is None:
        raise _BuildError("IBuilder::buildSerializedNetwork: the network has no layers (nothing was parsed)")
    if m.build_fails:
        raise _BuildError(m.build_fails)
    flags = cfg["flags"]
    strongly = "STRONGLY_TYPED" in net["flags"] or m.major >= 11
    props = cfg["props"]
    device = props["default_device_type"].name
    dynamic = [t for t in net["inputs"] if any(not isinstance(d, int) for d in t["dims"])]
    profiles = cfg["profiles"]
    if dynamic and not profiles:
        raise _BuildError("Network has dynamic or shape inputs, but no optimization profile has been defined.")
    for k, profile in enumerate(profiles):
        for t in net["inputs"]:
            shapes = profile.get(t["name"])
            if shapes is None:
                if t in dynamic:
                    raise _BuildError(f"optimization profile {k} has no shapes for dynamic input {t['name']}")
                continue
            for s in shapes:
                if len(s) != len(t["dims"]) or any(isinstance(d, int) and d != v for d, v in zip(t["dims"], s)):
                    raise _BuildError(f"optimization profile {k}: {t['name']} shape {list(s)} does not match the "
                                      f"network's {t['dims']}")
    cc = m.cuda.compute_capability
    level = props["hardware_compatibility_level"].name if "hardware_compatibility_level" in props else "NONE"
    if level == "AMPERE_PLUS" and cc < (8, 0):
        raise _BuildError("hardware compatibility AMPERE_PLUS needs an Ampere or newer GPU to build on")
    if level == "SAME_COMPUTE_CAPABILITY" and cc < (7, 5):  # NvInfer.h: "built on NVIDIA Turing and later GPUs"
        raise _BuildError("hardware compatibility SAME_COMPUTE_CAPABILITY needs a Turing or newer GPU to build on")
    fallback = []
    if device == "DLA":
        core = props["DLA_core"]
        if not 0 <= core < m.dla_cores:
            raise _BuildError(f"DLA core {core} requested; this device has {m.dla_cores}")
        if m.major in (8, 10) and not any(f in flags for f in ("FP16", "INT8")):
            raise _BuildError("DLA needs FP16 or INT8 (set BuilderFlag.FP16 and/or INT8)")
        if any(not isinstance(d, int) for t in net["inputs"] for d in t["dims"]) and any(
                p[t["name"]][0] != p[t["name"]][2] for p in profiles for t in dynamic):
            raise _BuildError("DLA does not support dynamic shapes: min, opt and max must be equal")
        fallback = [layer["name"] for layer in net["layers"] if layer["type"] in m.dla_unsupported]
        if fallback and "GPU_FALLBACK" not in flags:
            raise _BuildError(f"layer {fallback[0]} cannot run on DLA and GPU fallback is not enabled")
    calibrated = False
    calibrator = cfg["calibrator"]
    if calibrator is not None and "INT8" in flags and not strongly:
        _calibrate(m, net, cfg, calibrator, profiles)
        calibrated = True
    if cfg["cache"] is not None:
        cfg["cache"]._state["entries"] += len(net["layers"])
    return {
        "note": "edgedeploy conformance stand-in: a description of a build request, not a TensorRT engine",
        "tensorrt": m.version, "device": list(cc), "inputs": net["inputs"], "outputs": net["outputs"],
        "layers": net["layers"], "profiles": profiles, "builder_flags": sorted(flags),
        "network_flags": sorted(net["flags"]), "parser_flags": net["parsed"]["parser_flags"],
        "strongly_typed": strongly, "device_type": device, "dla_core": props["DLA_core"] if device == "DLA" else None,
        "gpu_fallback_layers": fallback, "hardware_compatibility": level,
        "version_compatible": "VERSION_COMPATIBLE" in flags, "calibrated": calibrated,
        # what the builder config held, so tests can check every setting reached it
        "memory_pools": dict(cfg["pools"]), "timing_cache_set": cfg["cache"] is not None,
        "layer_precisions": {layer["name"]: layer["precision"] for layer in net["layers"] if "precision" in layer},
        "precision_constraints": next((f for f in ("OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS")
                                       if f in flags), None),
        "config": {k: (v.name if hasattr(v, "name") else v) for k, v in props.items()},
    }


def _calibrate(m: Model, net: dict, cfg: dict, calibrator: Any, profiles: list) -> None:
    """The implicit calibrator protocol: read_calibration_cache(); if it gives nothing, get_batch_size() and then
    get_batch(names) until it returns None (each pointer must be device memory large enough for the calibration
    shapes); then write_calibration_cache(memoryview). Python exceptions in these calls are printed and swallowed,
    as the binding's trampoline does: get_batch raising ends calibration like returning None."""
    names = [t["name"] for t in net["inputs"]]
    ok, cache = m.call_back(calibrator, "read_calibration_cache")
    if ok and cache is not None and len(bytes(memoryview(cache))):
        m.calls.append(("calibration", "cache"))
        return
    dynamic = any(not isinstance(d, int) for t in net["inputs"] for d in t["dims"])
    shapes = cfg["calibration_profile"]
    if dynamic and shapes is None:
        if not profiles:
            raise _BuildError("calibration of a network with runtime dimensions needs a calibration profile")
        shapes = profiles[0]
    m.call_back(calibrator, "get_batch_size")
    batches = 0
    while True:
        ok, ptrs = m.call_back(calibrator, "get_batch", names)
        if not ok or ptrs is None or len(ptrs) == 0:
            break
        if len(ptrs) != len(names):
            raise _BuildError(f"get_batch returned {len(ptrs)} pointers for {len(names)} inputs")
        for t, ptr in zip(net["inputs"], ptrs):
            shape = shapes[t["name"]][1] if shapes else t["dims"]
            nbytes = int(np.prod(shape)) * _ITEMSIZE[t["dtype"]]
            if not m.cuda.device_range_ok(int(ptr), nbytes):
                raise _BuildError(f"calibration batch for {t['name']}: 0x{int(ptr):x} is not {nbytes} bytes of "
                                  f"device memory")
            m.cuda.read_device(int(ptr), nbytes)
        batches += 1
    m.calls.append(("calibration", "batches", batches))
    if batches == 0:
        raise _BuildError("Calibration failure occurred with no scaling factors detected.")
    m.call_back(calibrator, "write_calibration_cache",
                memoryview(f"TRT-{m.version}-standin-calibration {batches} batches\n".encode()))


# --------------------------------------------------------------------------------------------------- runtime

@on("Runtime.__init__")
def _runtime_init(m: Model, self: Any, logger: Any) -> None:
    m.register_logger(logger, "Runtime.__init__")
    self._state["props"] = {"DLA_core": -1, "engine_host_code_allowed": False}


@on("Runtime.deserialize_cuda_engine")
def _deserialize(m: Model, self: Any, serialized_engine: Any = None, **other: Any) -> Any:
    if other:
        raise NotModelled("Runtime.deserialize_cuda_engine from a stream reader")
    data = bytes(memoryview(serialized_engine))
    if not data.startswith(BLOB_MAGIC):
        m.log("ERROR", "IRuntime::deserializeCudaEngine: the plan is not a serialized engine (magic tag mismatch)")
        return None
    blob = json.loads(data[len(BLOB_MAGIC):])
    props = self._state["props"]
    if blob["tensorrt"] != m.version:
        built, here = (tuple(int(x) for x in v.split(".")) for v in (blob["tensorrt"], m.version))
        if not blob["version_compatible"] or here < built:
            m.log("ERROR", f"IRuntime::deserializeCudaEngine: the plan was built with TensorRT {blob['tensorrt']}; "
                           f"this is {m.version}")
            return None
    if blob["version_compatible"] and not props["engine_host_code_allowed"]:
        m.log("ERROR", "IRuntime::deserializeCudaEngine: a version-compatible plan holds host code; set "
                       "engine_host_code_allowed")
        return None
    if tuple(blob["device"]) != m.cuda.compute_capability and blob["hardware_compatibility"] == "NONE":
        m.log("ERROR", "IRuntime::deserializeCudaEngine: the plan was built for another compute capability")
        return None
    if blob["device_type"] == "DLA" and props["DLA_core"] != blob["dla_core"]:
        m.log("ERROR", f"IRuntime::deserializeCudaEngine: the DLA plan needs Runtime.DLA_core = {blob['dla_core']}")
        return None
    return m.trt.ICudaEngine._make(blob=blob)


def _engine_tensor(engine: Any, name: str) -> dict | None:
    blob = engine._state["blob"]
    return next((t for t in blob["inputs"] + blob["outputs"] if t["name"] == name), None)


def _io(engine: Any) -> list[dict]:
    blob = engine._state["blob"]
    return blob["inputs"] + blob["outputs"]


@on("ICudaEngine.num_io_tensors:get")
def _num_io(m: Model, self: Any) -> int:
    return len(_io(self))


@on("ICudaEngine.num_layers:get")
def _engine_num_layers(m: Model, self: Any) -> int:
    return len(self._state["blob"]["layers"])


@on("ICudaEngine.get_tensor_name")
def _tensor_name_at(m: Model, self: Any, index: int) -> str | None:
    io = _io(self)
    return io[index]["name"] if 0 <= index < len(io) else None


@on("ICudaEngine.get_tensor_mode")
def _tensor_mode(m: Model, self: Any, name: str) -> Any:
    t = _engine_tensor(self, name)
    return m.member("TensorIOMode", "NONE" if t is None else ("INPUT" if t["input"] else "OUTPUT"))


@on("ICudaEngine.get_tensor_shape")
def _engine_tensor_shape(m: Model, self: Any, name: str) -> Any:
    t = _engine_tensor(self, name)
    if t is None:
        m.log("ERROR", f"ICudaEngine::getTensorShape: no tensor named {name}")
        return _dims(m, [])
    return _dims(m, [d if isinstance(d, int) else -1 for d in t["dims"]])


@on("ICudaEngine.get_tensor_dtype")
def _engine_tensor_dtype(m: Model, self: Any, name: str) -> Any:
    t = _engine_tensor(self, name)
    return m.member("DataType", t["dtype"] if t else "FLOAT")


@on("ICudaEngine.get_tensor_profile_shape")
def _engine_profile_shape(m: Model, self: Any, name: str, profile_index: int) -> list:
    profiles = self._state["blob"]["profiles"]
    if not 0 <= profile_index < len(profiles) or name not in profiles[profile_index]:
        m.log("ERROR", f"ICudaEngine::getProfileShape: no profile {profile_index} for {name}")
        return []
    return [_dims(m, s) for s in profiles[profile_index][name]]


@on("ICudaEngine.is_shape_inference_io")
def _is_shape_io(m: Model, self: Any, name: str) -> bool:
    t = _engine_tensor(self, name)
    return bool(t and t.get("shape_input"))


@on("ICudaEngine.create_execution_context")
def _create_context(m: Model, self: Any, strategy: Any = None, **other: Any) -> Any:
    shapes = {t["name"]: None for t in self._state["blob"]["inputs"]}
    for t in self._state["blob"]["inputs"]:
        if all(isinstance(d, int) for d in t["dims"]):
            shapes[t["name"]] = tuple(t["dims"])
    return m.trt.IExecutionContext._make(engine=self, shapes=shapes, addresses={}, allocators={},
                                         props={"profiler": None, "enqueue_emits_profile": True})


@on("ICudaEngine.create_engine_inspector")
def _create_inspector(m: Model, self: Any) -> Any:
    return m.trt.EngineInspector._make(engine=self)


@on("EngineInspector.get_engine_information")
def _engine_information(m: Model, self: Any, format: Any) -> str:  # noqa: A002
    _expect(format, m.trt.LayerInformationFormat, "get_engine_information", "format")
    blob = self._state["engine"]._state["blob"]
    layers = [{"Name": layer["name"], "LayerType": layer["type"]} for layer in blob["layers"]]
    if format.name == "JSON":
        return json.dumps({"Layers": layers, "Bindings": [t["name"] for t in _io(self._state["engine"])]})
    return "\n".join(layer["name"] for layer in blob["layers"])


# -------------------------------------------------------------------------------------------------- context

def _shape_values(m: Model, ctx: Any, name: str) -> tuple[int, ...] | None:
    """The values of a shape-tensor input, read from the host memory its address points at (None: not set)."""
    engine_t = _engine_tensor(ctx._state["engine"], name)
    ptr, shape = ctx._state["addresses"].get(name), ctx._state["shapes"].get(name)
    if ptr is None or shape is None:
        return None
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * _ITEMSIZE[engine_t["dtype"]]
    if not m.cuda._inside(m.cuda.pinned, ptr, nbytes):
        return None
    return tuple(int(v) for v in np.frombuffer(ctypes.string_at(ptr, nbytes), dtype=_numpy(engine_t["dtype"])))


def _current_shape(ctx: Any, t: dict, m: Model | None = None) -> tuple[int, ...] | None:
    if t["input"]:
        return ctx._state["shapes"].get(t["name"])
    if t.get("shape_from"):  # known once the shape tensor's values are in host memory
        values = _shape_values(m, ctx, t["shape_from"]) if m is not None else None
        return values if values is not None else tuple(-1 for _ in t["dims"])
    named: dict[str, int] = {}
    for i in ctx._state["engine"]._state["blob"]["inputs"]:
        shape = ctx._state["shapes"].get(i["name"])
        for d, v in zip(i["dims"], shape or ()):
            if isinstance(d, str):
                named[d] = v
    return tuple(d if isinstance(d, int) else named.get(d, -1) if d else -1 for d in t["dims"])


@on("IExecutionContext.set_input_shape")
def _set_input_shape(m: Model, self: Any, name: str, shape: Any) -> bool:
    engine = self._state["engine"]
    t = _engine_tensor(engine, name)
    shape = _shape(shape)
    if t is None or not t["input"]:
        m.log("ERROR", f"IExecutionContext::setInputShape: {name} is not an input tensor")
        return False
    if len(shape) != len(t["dims"]) or any(isinstance(d, int) and d != v for d, v in zip(t["dims"], shape)):
        m.log("ERROR", f"IExecutionContext::setInputShape: shape {list(shape)} does not match {t['dims']}")
        return False
    profiles = engine._state["blob"]["profiles"]
    if profiles and name in profiles[0]:
        lo, _, hi = profiles[0][name]
        if any(not a <= v <= b for a, v, b in zip(lo, shape, hi)):
            m.log("ERROR", f"IExecutionContext::setInputShape: Error Code 3: API Usage Error (shape {list(shape)} "
                           f"of {name} is out of the profile's bounds {lo}..{hi})")
            return False
    self._state["shapes"][name] = shape
    return True


@on("IExecutionContext.get_tensor_shape")
def _context_tensor_shape(m: Model, self: Any, name: str) -> Any:
    t = _engine_tensor(self._state["engine"], name)
    if t is None:
        return _dims(m, [])
    shape = _current_shape(self, t, m)
    return _dims(m, shape if shape is not None else [-1] * len(t["dims"]))


@on("IExecutionContext.set_tensor_address")
def _set_tensor_address(m: Model, self: Any, name: str, memory: int) -> bool:
    if _engine_tensor(self._state["engine"], name) is None:
        m.log("ERROR", f"IExecutionContext::setTensorAddress: no tensor named {name}")
        return False
    if m.tensor_address_false:
        m.log("ERROR", f"IExecutionContext::setTensorAddress: Error Code 3: API Usage Error (address of {name} "
                       f"refused)")
        return False
    self._state["addresses"][name] = memory
    return True


@on("IExecutionContext.set_output_allocator")
def _set_output_allocator(m: Model, self: Any, name: str, output_allocator: Any) -> bool:
    t = _engine_tensor(self._state["engine"], name)
    if t is None or t["input"]:
        m.log("ERROR", f"IExecutionContext::setOutputAllocator: {name} is not an output tensor")
        return False
    self._state["allocators"][name] = output_allocator
    return True


@on("IExecutionContext.get_output_allocator")
def _get_output_allocator(m: Model, self: Any, name: str) -> Any:
    return self._state["allocators"].get(name)


def _allocate(m: Model, ctx: Any, t: dict, shape: tuple[int, ...], stream: int) -> int | None:
    """TensorRT asking an output's IOutputAllocator for memory once the size is known, then telling the shape:
    reallocate_output_async (10+, when the subclass defines it; the binding falls back to reallocate_output) or
    reallocate_output (8.x); exceptions are printed and swallowed by the trampoline (a null pointer)."""
    allocator = ctx._state["allocators"][t["name"]]
    nbytes = int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE.get(t["dtype"], 1)
    current = ctx._state["addresses"].get(t["name"], 0)
    if m.major >= 10 and any("reallocate_output_async" in c.__dict__ for c in type(allocator).__mro__
                             if not c.__dict__.get("_standin_bound")):
        ok, ptr = m.call_back(allocator, "reallocate_output_async", t["name"], current, nbytes, 256, stream)
    else:
        ok, ptr = m.call_back(allocator, "reallocate_output", t["name"], current, nbytes, 256)
    if not ok or not ptr or int(ptr) % 256 or not m.cuda.device_range_ok(int(ptr), max(nbytes, 1)):
        m.log("ERROR", f"IExecutionContext::enqueueV3: the output allocator gave no {nbytes} bytes of 256-byte "
                       f"aligned device memory for {t['name']}")
        return None
    ctx._state["addresses"][t["name"]] = int(ptr)
    m.call_back(allocator, "notify_shape", t["name"], _dims(m, shape))
    return int(ptr)


@on("IExecutionContext.get_tensor_address")
def _get_tensor_address(m: Model, self: Any, name: str) -> int:
    return self._state["addresses"].get(name, 0)


@on("IExecutionContext.execute_async_v3")
def _execute(m: Model, self: Any, stream_handle: int) -> bool:
    if m.execute_fails:
        m.log("ERROR", m.execute_fails)
        return False
    if not m.cuda.live_stream(stream_handle):
        m.log("ERROR", f"IExecutionContext::enqueueV3: 0x{stream_handle:x} is not a live CUDA stream")
        return False
    io = _io(self._state["engine"])
    if stream_handle in m.cuda.capturing and any(t.get("data_dependent") for t in io):
        m.cuda.uncapturable(stream_handle)  # sizes known only on the GPU: TensorRT must wait, which capture forbids
        m.log("ERROR", "IExecutionContext::enqueueV3: an engine with data-dependent output shapes cannot be "
                       "captured in a CUDA graph")
        return False
    buffers = {}
    for t in io:
        allocated = not t["input"] and t["name"] in self._state["allocators"]
        if t.get("data_dependent") and not allocated:
            m.log("ERROR", f"IExecutionContext::enqueueV3: {t['name']} has a data-dependent shape and no "
                           f"IOutputAllocator (set_output_allocator)")
            return False
        if t.get("data_dependent"):
            # the size is computed on the GPU: TensorRT waits for it before asking the allocator
            m.cuda._drain(stream_handle)
            first = next(i for i in io if i["input"])
            fptr, fshape = self._state["addresses"].get(first["name"]), _current_shape(self, first)
            x = np.frombuffer(m.cuda.read_device(fptr, int(np.prod(fshape)) * _ITEMSIZE[first["dtype"]]),
                              dtype=_numpy(first["dtype"]))
            count = data_dependent_count(x)
            shape = tuple(d if isinstance(d, int) else count for d in t["dims"])
        else:
            shape = _current_shape(self, t, m)
        if shape is None or any(d < 0 for d in shape):
            m.log("ERROR", f"IExecutionContext::enqueueV3: the shape of {t['name']} is not set")
            return False
        nbytes = int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE.get(t["dtype"], 1)
        if allocated and _allocate(m, self, t, shape, stream_handle) is None:
            return False
        ptr = self._state["addresses"].get(t["name"])
        if ptr is None:
            m.log("ERROR", f"IExecutionContext::enqueueV3: no address set for {t['name']}")
            return False
        if t.get("shape_input"):
            if not m.cuda._inside(m.cuda.pinned, ptr, nbytes):
                m.log("ERROR", f"IExecutionContext::enqueueV3: Error Code 3: API Usage Error (shape tensor "
                               f"{t['name']} must be in host memory; 0x{ptr:x} is not)")
                return False
            continue
        if ptr % 256 or not m.cuda.device_range_ok(ptr, nbytes):
            m.log("ERROR", f"IExecutionContext::enqueueV3: {t['name']} at 0x{ptr:x} is not {nbytes} bytes of "
                           f"256-byte aligned device memory")
            return False
        buffers[t["name"]] = (ptr, shape, nbytes)
    m.executions += 1

    def kernels() -> None:
        """The engine's work, run when the stream reaches it: reads the inputs' device memory then, not now."""
        first = next(t for t in io if t["input"] and not t.get("shape_input"))
        ptr, shape, nbytes = buffers[first["name"]]
        x = np.frombuffer(m.cuda.read_device(ptr, nbytes), dtype=_numpy(first["dtype"])).reshape(shape)
        sums = x.reshape(shape[0], -1).astype(np.float64).sum(axis=1) if shape and shape[0] else np.zeros(0)
        for t in io:
            if t["input"]:
                continue
            ptr, shape, nbytes = buffers[t["name"]]
            out = np.zeros(shape, dtype=_numpy(t["dtype"]))
            if t.get("data_dependent") and len(sums):
                out[...] = np.asarray(sums[0]).astype(out.dtype)  # every element: the marker of sample 0
            elif shape and shape[0] == len(sums):
                out[...] = sums.reshape((-1,) + (1,) * (len(shape) - 1)).astype(out.dtype)
            m.cuda.write_device(ptr, out.tobytes())

    def layer_times() -> None:
        """What the engine's layers took (markers, not measurements), kept for the profiler once they ran."""
        self._state["layer_times"] = [(layer["name"], 0.001 * (k + 1))
                                      for k, layer in enumerate(self._state["engine"]._state["blob"]["layers"])]

    self._state["layer_times"] = None  # this run's times exist only once its work has run
    m.cuda.enqueue(stream_handle, "execute_async_v3", kernels)  # enqueueV3: the work runs on the stream
    m.cuda.enqueue(stream_handle, "execute_async_v3 (layer times)", layer_times)
    props = self._state.setdefault("props", {})
    if props.get("profiler") is not None and props.get("enqueue_emits_profile", True):
        m.cuda._drain(stream_handle)  # emitting the profile from the enqueue makes it wait for the work
        _report(m, self)
    return True


def _report(m: Model, ctx: Any) -> bool:
    profiler = ctx._state.get("props", {}).get("profiler")
    if profiler is None or not ctx._state.get("layer_times"):
        return False
    for name, ms in ctx._state["layer_times"]:
        m.call_back(profiler, "report_layer_time", name, ms)
    ctx._state["layer_times"] = None
    return True


@on("IExecutionContext.report_to_profiler")
def _report_to_profiler(m: Model, self: Any) -> bool:
    """Reports the last run's layer times; before the stream has run that work, there are none (False)."""
    return _report(m, self)


def data_dependent_count(x: np.ndarray) -> int:
    """The stand-in's rule for the leading size of a data-dependent output (a marker, like NonZero's count): how
    many elements of the first input are positive, at most 64."""
    return int(min(64, np.count_nonzero(np.asarray(x) > 0)))


def _numpy(dtype: str) -> Any:
    return {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
            "BOOL": np.bool_, "UINT8": np.uint8}.get(dtype, np.uint8)


__all__ = ["BLOB_MAGIC", "CACHE_MAGIC", "Model", "REGISTRY", "STORED"]
