"""The conformance stand-in is as strict as the bindings it is generated from: names a release lacks raise
AttributeError, calls are checked against the recorded argument names, deprecated members warn, documented failure
returns can be switched on. It never produces anything that claims to be an engine."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from trt_standin import BLOB_MAGIC, CudaStandIn, Model, NotModelled, load_surface, surface_versions
from trt_standin.behaviors import REGISTRY, STORED
from trt_standin.models import conv_model

VERSIONS = surface_versions()


@pytest.fixture(params=VERSIONS)
def model(request) -> Model:
    return Model(load_surface(request.param), CudaStandIn())


def logger(trt):
    class Quiet(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.seen = []

        def log(self, severity, msg):
            self.seen.append((severity.name, msg))

    return Quiet()


def explicit_batch(trt) -> int:
    """create_network's flags for an ONNX network: EXPLICIT_BATCH on TensorRT 8 (the default from 10 on)."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if trt.__version__.startswith("8.") else 0


def test_names_follow_each_release(model):
    trt, major = model.trt, model.major
    assert trt.__version__ == model.version
    assert hasattr(trt.BuilderFlag, "FP16") == (major in (8, 10))  # TensorRT 11 removed FP16/INT8 flags
    assert hasattr(trt, "IInt8EntropyCalibrator2") == (major in (8, 10))
    assert hasattr(trt, "HardwareCompatibilityLevel") == (model.version != "8.5.3.1")  # arrived in 8.6
    if major >= 10:
        assert hasattr(trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY") == (model.version != "10.3.0.26")
    assert hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") == (major < 11)
    with pytest.raises(AttributeError):
        trt.BuilderFlag.FP17  # noqa: B018
    with pytest.raises(AttributeError):
        trt.NoSuchClass  # noqa: B018
    assert trt.ILogger.ERROR is trt.ILogger.Severity.ERROR  # export_values
    assert trt.Logger.WARNING is trt.ILogger.Severity.WARNING  # copied by the package's __init__.py
    assert trt.nptype(trt.float16) is np.float16
    assert trt.DataType(int(trt.DataType.HALF)) == trt.DataType.HALF  # enums take their value, as pybind11's do
    if hasattr(trt, "bfloat16"):  # 10.x+: a type numpy has none of
        with pytest.raises(TypeError, match="Could not resolve TensorRT datatype"):
            trt.nptype(trt.bfloat16)


def test_calls_are_checked_against_recorded_argument_names(model):
    trt = model.trt
    builder = trt.Builder(logger=logger(trt))
    config = builder.create_builder_config()
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_flag(flg=trt.BuilderFlag.TF32)  # the binding's argument is `flag`
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_timing_cache(config.create_timing_cache(b""))  # ignore_mismatch has no default
    with pytest.raises(TypeError, match="incompatible function arguments"):
        builder.create_builder_config(1)  # no arguments
    with pytest.raises(TypeError):
        config.set_timing_cache(None, False)  # a C++ reference: None is refused
    profile = builder.create_optimization_profile()
    profile.set_shape(input="x", min=(1, 3), opt=(2, 3), max=(4, 3))
    with pytest.raises(RuntimeError, match="inconsistent"):
        profile.set_shape("x", (4, 3), (2, 3), (1, 3))


def test_objects_take_only_the_attributes_the_binding_defines(model):
    trt = model.trt
    config = trt.Builder(logger(trt)).create_builder_config()
    if model.version.startswith("8.5."):  # the optimization level arrives in 8.6
        with pytest.raises(AttributeError):
            config.builder_optimization_level = 5
    else:
        config.builder_optimization_level = 5
        assert config.builder_optimization_level == 5
    with pytest.raises(AttributeError):
        config.builder_optimisation_level = 5  # a typo is an error, as on the real object
    with pytest.raises(AttributeError, match="can't set attribute"):
        config.num_optimization_profiles = 2  # read-only
    with pytest.raises(TypeError, match="No constructor defined"):
        trt.IBuilderConfig()
    serialized = config.create_timing_cache(b"").serialize()
    assert isinstance(memoryview(serialized), memoryview)  # the buffer protocol, as on IHostMemory
    with pytest.raises(AttributeError):
        serialized.decode()  # bytes' own methods stay hidden


def test_a_python_subclass_must_call_the_bound_init(model):
    trt = model.trt

    class Forgetful(trt.ILogger):
        def __init__(self):
            pass

        def log(self, severity, msg):
            pass

    with pytest.raises(TypeError, match="ILogger.__init__\\(\\) must be called"):
        Forgetful()


def test_deprecated_members_warn_like_the_bindings(model):
    trt = model.trt
    config = trt.Builder(logger(trt)).create_builder_config()
    if "int8_calibrator" not in model.surface["python"]["classes"]["IBuilderConfig"]["properties"]:
        # TensorRT 11 removed the implicit calibrator
        with pytest.raises(AttributeError):
            config.int8_calibrator  # noqa: B018
        return
    if model.major == 8:  # deprecated from 10.1: TensorRT 8's calibrator property is plain
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            config.int8_calibrator = None
        return
    with pytest.warns(DeprecationWarning, match="Use Deprecated in TensorRT 10.1"):
        config.int8_calibrator = None


def test_unmodelled_members_say_so_rather_than_answer(model):
    trt = model.trt
    builder = trt.Builder(logger(trt))
    with pytest.raises(NotModelled, match="Builder.is_network_supported"):
        builder.is_network_supported(builder.create_network(0), builder.create_builder_config())


def test_failure_switches_turn_on_documented_failure_returns(tmp_path):
    path = conv_model(tmp_path / "m.onnx")
    for version in VERSIONS:
        m = Model(load_surface(version), CudaStandIn(), timing_cache_none=True, build_fails="no tactics",
                  parser_error=(1, "UNSUPPORTED_NODE", "switched on by the test"))
        trt = m.trt
        log = logger(trt)
        builder = trt.Builder(log)
        config = builder.create_builder_config()
        assert config.create_timing_cache(b"") is None
        network = builder.create_network(explicit_batch(trt))
        parser = trt.OnnxParser(network, log)
        assert parser.parse_from_file(str(path)) is False
        err = parser.get_error(0)
        assert (err.node(), str(err.code())) == (1, "UNSUPPORTED_NODE")
        if hasattr(err, "node_name"):  # 8.6+
            assert (err.node_name(), err.node_operator()) == ("relu0", "Relu")
        assert builder.build_serialized_network(network, config) is None
        assert any(sev == "ERROR" for sev, _ in log.seen)  # TensorRT logs before it fails


def test_the_process_logger_is_the_first_one_given(model):
    trt = model.trt
    first, second = logger(trt), logger(trt)
    trt.Builder(first)
    runtime = trt.Runtime(second)
    assert runtime.deserialize_cuda_engine(b"garbage") is None
    assert first.seen and not second.seen  # TensorRT's logger is a singleton


def test_a_build_describes_a_request_and_never_claims_to_be_an_engine(model, tmp_path):
    trt = model.trt
    log = logger(trt)
    builder = trt.Builder(log)
    network = builder.create_network(explicit_batch(trt))
    assert trt.OnnxParser(network, log).parse_from_file(str(conv_model(tmp_path / "m.onnx", batch=2)))
    blob = bytes(memoryview(builder.build_serialized_network(network, builder.create_builder_config())))
    assert blob.startswith(BLOB_MAGIC) and b"not a TensorRT engine" in blob


def test_behaviours_name_only_members_of_some_release():
    """A behaviour for a name no release has would never run: a typo in the stand-in."""
    def members(surface):
        py = surface["python"]
        for cls, spec in py["classes"].items():
            yield f"{cls}.__init__"
            yield from (f"{cls}.{m}" for m in spec["methods"])
            for p in spec["properties"]:
                yield from (f"{cls}.{p}:get", f"{cls}.{p}:set", f"{cls}.{p}")
        for enum, spec in py["enums"].items():
            yield from (f"{enum}.{m}" for m in spec.get("methods", {}))

    known = set().union(*(set(members(load_surface(v))) for v in VERSIONS))
    assert not set(REGISTRY) - known and not STORED - known


def test_cuda_standin_checks_device_pointers_and_stream_handles():
    cuda = CudaStandIn()
    err, ptr = cuda.cudaMalloc(64)
    assert err == 0 and ptr % 256 == 0
    host = np.arange(64, dtype=np.uint8)
    kind = cuda.module().cudaMemcpyKind
    _, stream = cuda.cudaStreamCreate()
    assert cuda.cudaMemcpyAsync(ptr, host.ctypes.data, 64, kind.cudaMemcpyHostToDevice, stream)[0] == 0
    assert cuda.read_device(ptr, 64) == bytes(64) and cuda.pending() == ["cudaMemcpyAsync"]  # queued, not done
    assert cuda.cudaStreamSynchronize(stream)[0] == 0
    assert cuda.read_device(ptr, 64) == host.tobytes() and cuda.pending() == []
    assert cuda.cudaMemcpyAsync(ptr + 32, host.ctypes.data, 64, kind.cudaMemcpyHostToDevice, stream)[0] != 0
    assert cuda.cudaMemcpyAsync(ptr, host.ctypes.data, 8, kind.cudaMemcpyHostToDevice, stream.getPtr())[0] != 0
    assert cuda.cudaFree(ptr)[0] == 0 and cuda.cudaFree(ptr)[0] != 0  # a double free is an error code
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert int(stream) == stream.native
