"""Issue 22's audit findings of the TensorRT/CUDA layer, one test each (each fails on the code before its fix), run
against the conformance stand-in of NVIDIA's recorded API surfaces (tests/backends/tensorrt/trt_standin)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from trt_standin import install, surface_versions
from trt_standin.cuda import cudaStream_t
from trt_standin.behaviors import CACHE_MAGIC, data_dependent_count
from trt_standin.models import calibration_npz, deploy_folder, feeds, marker, nms_model, reshape_model

from edgedeploy.backends import trt_cuda, trt_plan

from edgedeploy.backends.tensorrt import TensorRTBackend, load_plan
from edgedeploy.config import TensorRTSettings
from edgedeploy.errors import EdgeDeployError, UsageError

REPO = Path(__file__).resolve().parents[3]

VERSIONS = surface_versions()


@pytest.fixture(params=VERSIONS)
def standin(request, monkeypatch):
    return install(monkeypatch, request.param)


def build(folder, precision="fp32", **kw):
    deploy_folder(folder)
    return TensorRTBackend().build(folder / "deploy.onnx", folder / "trt", precision,
                                   TensorRTSettings.model_validate(kw))


# ------------------------------------------------------------------------------------------------ finding 7
def test_finding7_argument_types_come_from_the_surface(standin, tmp_path):
    """execute_async_v3 binds `size_t stream_handle`: pybind11 takes any object with __index__/__int__, so the
    cudaStream_t object NVIDIA's samples pass is accepted; a float is not; an enum parameter takes only its members."""
    runner = load_plan(build(tmp_path).artifact)
    x = feeds(2)
    runner._stage_inputs(x)
    stream_object = runner.stream.obj
    assert isinstance(stream_object, cudaStream_t)
    assert runner.context.execute_async_v3(stream_object) is True  # a cuda-python handle object, as in the samples
    assert runner.context.execute_async_v3(stream_handle=runner.stream.handle) is True
    with pytest.raises(TypeError, match="incompatible function arguments"):
        runner.context.execute_async_v3(float(runner.stream.handle))
    runner.close()
    trt = standin.trt
    config = trt.Builder(trt.Logger()).create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 20)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_memory_pool_limit(0, 1 << 20)  # an int for an enum
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, "1M")


# ------------------------------------------------------------------------------------------------ finding 1
def test_finding1_outputs_are_read_only_after_the_stream_is_synchronized(standin, tmp_path, monkeypatch):
    """Copies and the engine's work run on the stream (asynchronously on a GPU): outputs read before the stream is
    synchronized are stale. The runner's results follow each new input; with its synchronize deleted they do not."""
    runner = load_plan(build(tmp_path).artifact)
    for seed in (1, 2):
        x = feeds(3, seed=seed)
        np.testing.assert_allclose(runner.run(x)["pred"][:, 0, 0, 0], marker(x["images"]), rtol=1e-5)
    monkeypatch.setattr(trt_cuda.Stream, "synchronize", lambda self: None)  # the planted bug: no synchronize
    x = feeds(3, seed=3)
    stale = runner.run(x)["pred"][:, 0, 0, 0]
    assert not np.allclose(stale, marker(x["images"]), rtol=1e-5)  # the previous run's outputs, not this one's
    assert "execute_async_v3" in standin.cuda.pending()
    runner.close()


def test_finding1_event_synchronize_waits_only_up_to_its_event(standin):
    cuda = standin.cuda
    rt = cuda.module()
    _, ptr = cuda.cudaMalloc(16)
    host = np.arange(16, dtype=np.uint8)
    out = np.zeros(16, dtype=np.uint8)
    _, stream = cuda.cudaStreamCreate()
    _, first = cuda.cudaEventCreate()
    _, last = cuda.cudaEventCreate()
    cuda.cudaMemcpyAsync(ptr, host.ctypes.data, 16, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)
    cuda.cudaEventRecord(first, stream)
    cuda.cudaMemcpyAsync(out.ctypes.data, ptr, 16, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    cuda.cudaEventRecord(last, stream)
    assert cuda.cudaEventElapsedTime(first, last)[0] == rt.cudaError_t.cudaErrorNotReady
    cuda.cudaEventSynchronize(first)
    assert not out.any()  # the D2H copy after `first` has not run
    cuda.cudaEventSynchronize(last)
    assert (out == host).all() and cuda.cudaEventElapsedTime(first, last)[0] == 0
    cuda.cudaStreamDestroy(stream)


# ------------------------------------------------------------------------------------------------ finding 3
def _blob(built) -> dict:
    return json.loads(built.artifact.read_bytes().split(b"\n", 1)[1])


def test_finding3_every_tensorrt_setting_reaches_the_builder_config(monkeypatch, tmp_path):
    """Builds with every `tensorrt:` setting set (on the newest 10.x, the release with every feature), each checked
    where TensorRT receives it; a setting added to TensorRTSettings without a line here fails the test."""
    newest10 = max((v for v in VERSIONS if v.startswith("10.")), key=lambda v: int(v.split(".")[1]))
    covered: set[str] = set()

    def build_with(folder, precision, **kw):
        covered.update(kw)
        return build(folder, precision, **kw)

    standin = install(monkeypatch, newest10)
    seed = tmp_path / "seed.cache"  # a cache as the stand-in serializes one (a bundle's)
    seed.write_bytes(CACHE_MAGIC + json.dumps({"version": standin.version, "device": [8, 7], "entries": 3}).encode())
    built = build_with(tmp_path / "gpu", "int8", profiles={"batch": {"min": 1, "opt": 2, "max": 4}},
                       workspace_mb=512, tactic_dram_mb=1536, builder_optimization_level=5,
                       timing_cache=str(tmp_path / "t.cache"), timing_cache_seed=str(seed),
                       tf32=True, hardware_compatibility="ampere_plus", version_compatible=True,
                       int8_route="qdq", int8_unquantized="fp32")
    gpu = _blob(built)
    assert "combined with the entries of seed.cache" in built.info["timing_cache"]  # ITimingCache.combine
    # set_memory_pool_limit(MemoryPoolType.WORKSPACE / TACTIC_DRAM, ...)
    assert gpu["memory_pools"] == {"WORKSPACE": 512 << 20, "TACTIC_DRAM": 1536 << 20}
    assert gpu["config"]["builder_optimization_level"] == 5 and gpu["timing_cache_set"]
    assert gpu["profiles"] == [{"images": [[1, 3, 16, 16], [2, 3, 16, 16], [4, 3, 16, 16]]}]
    assert "TF32" in gpu["builder_flags"] and gpu["config"]["hardware_compatibility_level"] == "AMPERE_PLUS"
    assert gpu["version_compatible"] and gpu["strongly_typed"] and "FP16" not in gpu["builder_flags"]
    model = install(monkeypatch, newest10, dla_cores=2)
    with pytest.warns(DeprecationWarning):  # per-layer precision constraints are deprecated from 10.12
        dla = _blob(build_with(tmp_path / "dla", "fp16", dla_core=1, gpu_fallback=True,
                               profiles={"batch": {"min": 1, "opt": 1, "max": 1}}, layer_precisions={"relu0": "fp32"}))
    assert dla["device_type"] == "DLA" and dla["dla_core"] == 1 and "GPU_FALLBACK" in dla["builder_flags"]
    # ILayer.precision + set_output_type on relu0's layer, obeyed
    assert dla["layer_precisions"] == {"relu0": "FLOAT"}
    assert dla["precision_constraints"] == "OBEY_PRECISION_CONSTRAINTS"
    deploy_folder(tmp_path / "cal")
    calibration_npz(tmp_path / "calib.npz")
    with pytest.warns(DeprecationWarning):  # the implicit calibrator is deprecated from 10.1
        cal = _blob(build_with(tmp_path / "cal", "int8", int8_route="calibrator", calibrator="minmax",
                               calibration_data=str(tmp_path / "calib.npz"),
                               calibration_cache=str(tmp_path / "int8.cache"), calibration_batch_size=4))
    assert cal["calibrated"] and ("calibration", "batches", 6) in model.calls and (tmp_path / "int8.cache").is_file()
    covered.add("plan_for_major")  # a dry-run setting: a real build drops it (tested in test_trt_plan.py)
    assert covered == set(TensorRTSettings.model_fields), set(TensorRTSettings.model_fields) - covered


# ------------------------------------------------------------------------------------------------ finding 4
def test_finding4_cuda_python_is_pinned_to_the_devices_cuda_major(monkeypatch, tmp_path):
    """JetPack 6's driver is CUDA 12.x: an unpinned cuda-python resolves to 13, whose calls all fail there. The
    tensorrt extra pins cuda-python 12 (which runs on 12 and 13 drivers), the docs give the pin per JetPack, and
    bindings newer than the driver are one error naming both versions and the pin."""
    extra = re.search(r"^tensorrt = \[(.*)\]", (REPO / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    assert '"cuda-python>=12.6,<13"' in extra  # (tomllib is 3.11+: this test runs on 3.10 too)
    docs = (REPO / "docs" / "tensorrt.md").read_text() + (REPO / "README.md").read_text()
    assert '"cuda-python>=12.6,<13"' in docs and '"cuda-python>=13,<14"' in docs
    install(monkeypatch, VERSIONS[-1], flavour="13", driver=12060)  # cuda-python 13 on JetPack 6.2's driver
    deploy_folder(tmp_path)
    with pytest.raises(EdgeDeployError, match=r"cuda-python 13.5.0 needs a newer driver than this one \(CUDA 12.6\)")\
            as e:
        TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "fp32", TensorRTSettings())
    assert '"cuda-python>=12.6,<13"' in e.value.fix


# ------------------------------------------------------------------------------------------------ finding 5
@pytest.mark.parametrize("version", [v for v in VERSIONS if not v.startswith("11.")])
def test_finding5_int8_lets_unquantized_layers_run_fp16_like_trtexec(monkeypatch, tmp_path, version):
    install(monkeypatch, version)
    built = build(tmp_path, "int8")
    blob = _blob(built)
    assert {"INT8", "FP16"} <= set(blob["builder_flags"]) and not blob["strongly_typed"]
    assert "STRONGLY_TYPED" not in blob["network_flags"]
    plan = TensorRTBackend().plan(tmp_path / "deploy.onnx", tmp_path / "trt", "int8", TensorRTSettings())
    cmd = trt_plan.trtexec_command(plan)
    assert "--int8" in cmd and "--fp16" in cmd and "--stronglyTyped" not in cmd
    assert "trtexec --int8 --fp16" in (REPO / "docs" / "tensorrt.md").read_text()


# ------------------------------------------------------------------------------------------------ finding 8
def test_finding8_ci_installs_the_device_set_on_python_310_with_constraints_valid_there():
    ci = (REPO / ".ci" / "run").read_text()
    assert "constraints-py310.txt" in ci and "python3.10" in ci and 'pytest -o addopts="-ra" -k "trt or tensorrt"' in ci
    pins = dict(line.split("==") for line in (REPO / "constraints-py310.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    # numpy 2.3+ needs Python 3.11 (its Requires-Python); 2.2.x is the last for 3.10
    assert tuple(int(x) for x in pins["numpy"].split(".")[:2]) < (2, 3)


# ------------------------------------------------------------------------------------------------ finding 9
@pytest.mark.parametrize("version, jetpack", [("8.5", "5.1"), ("8.6", "6.0")])
def test_finding9_jetpack5_and_60_tensorrt_builds_and_runs(monkeypatch, tmp_path, version, jetpack):
    model = install(monkeypatch, version)
    runner = load_plan(build(tmp_path, "fp16").artifact)
    x = feeds(3)
    np.testing.assert_allclose(runner.run(x)["pred"][:, 0, 0, 0], marker(x["images"]), rtol=1e-5)
    runner.close()
    assert ("create_network", ("EXPLICIT_BATCH",)) in model.calls
    with pytest.raises(UsageError, match="TensorRT 8.4.1 is not supported") as e:
        trt_plan.resolve_major(TensorRTSettings(), "8.4.1")
    assert f"(JetPack {jetpack}" in e.value.fix


# --------------------------------------------------------------------------- finding 2 / deliverable 2, finding 6
def _build_from(folder, model_fn):
    model_fn(folder / "deploy.onnx")
    return TensorRTBackend().build(folder / "deploy.onnx", folder / "trt", "fp32", TensorRTSettings())


@pytest.mark.parametrize("version", VERSIONS)
def test_data_dependent_outputs_come_through_an_output_allocator(monkeypatch, tmp_path, version):
    """An NMS-style graph (end-to-end detectors): `selected` has K rows, known only after execution. The runner
    gives TensorRT an IOutputAllocator for it, reads the shape TensorRT notifies, and copies K rows back; K changes
    from run to run (the buffer grows); everything is freed on close."""
    model = install(monkeypatch, version)
    runner = load_plan(_build_from(tmp_path, nms_model).artifact)
    assert runner.allocated == ["selected"]
    rng = np.random.default_rng(0)
    for scale in (0.1, 1.0, 3.0):  # few, then more positive elements: K grows
        feed = {"boxes": (rng.normal(size=(1, 32, 4)) + scale).astype(np.float32),
                "scores": rng.random((1, 1, 32)).astype(np.float32)}
        out = runner.run(feed)["selected"]
        k = data_dependent_count(feed["boxes"])
        index = np.int64 if model.major >= 10 else np.int32  # TensorRT 8 casts INT64 I/O to INT32
        assert out.shape == (k, 3) and out.dtype == index
        assert (out == index(marker(feed["boxes"])[0])).all()
    runner.close()
    assert not model.cuda.device and not model.cuda.pinned


@pytest.mark.parametrize("version", VERSIONS)
def test_finding6_shape_tensor_inputs_live_in_host_memory(monkeypatch, tmp_path, version):
    """A Reshape whose target shape is an input: TensorRT reads a shape tensor's values on the host (is_shape_-
    inference_io), so its address is host memory, and the output's shape follows from those values."""
    install(monkeypatch, version)
    runner = load_plan(_build_from(tmp_path, reshape_model).artifact)
    assert runner.shape_inputs == {"shape"} and "shape" not in runner.device
    x = feeds(3)
    out = runner.run({**x, "shape": np.array([3, 8 * 16 * 16], np.int64)})["flat"]
    assert out.shape == (3, 2048)
    np.testing.assert_allclose(out[:, 5], marker(x["images"]), rtol=1e-5)
    runner.close()
    # the planted bug: the shape tensor given device memory, as before the fix → TensorRT's usage error
    install(monkeypatch, version)
    runner = load_plan(_build_from(tmp_path / "again", reshape_model).artifact)
    runner.device["shape"] = trt_cuda.DeviceBuffer(16)
    runner.context.set_tensor_address("shape", runner.device["shape"].ptr)
    with pytest.raises(EdgeDeployError, match="shape tensor shape must be in host memory"):
        runner.run({**x, "shape": np.array([3, 2048], np.int64)})
    runner.close()


# ------------------------------------------------------------------------------------ deliverable 6: board memory
@pytest.mark.parametrize("version", VERSIONS)
def test_tactic_dram_limit_reaches_the_builder_where_the_release_has_it(monkeypatch, tmp_path, version):
    install(monkeypatch, version)
    if version == "8.5":  # MemoryPoolType.TACTIC_DRAM arrives in 8.6
        with pytest.raises(UsageError, match="tactic_dram_mb` needs TensorRT 8.6 or newer"):
            build(tmp_path, tactic_dram_mb=1024)
        return
    built = build(tmp_path, tactic_dram_mb=1024, workspace_mb=256)
    assert _blob(built)["memory_pools"] == {"WORKSPACE": 256 << 20, "TACTIC_DRAM": 1024 << 20}
    plan = TensorRTBackend().plan(tmp_path / "deploy.onnx", tmp_path / "trt", "fp32",
                                  TensorRTSettings(tactic_dram_mb=1024, workspace_mb=256))
    assert "--memPoolSize=workspace:256M" in trt_plan.trtexec_command(plan)  # trtexec has no tactic DRAM pool
    assert "tactic DRAM 1024 MiB" in plan.describe_text()


@pytest.mark.parametrize("version", VERSIONS)
def test_an_out_of_memory_build_is_named_with_what_to_lower(monkeypatch, tmp_path, version):
    install(monkeypatch, version, build_fails="[defaultAllocator.cpp::allocate::20] Error Code 1: Cuda Runtime "
                                              "(out of memory)")
    with pytest.raises(EdgeDeployError, match="ran out of memory building the engine") as e:
        build(tmp_path, workspace_mb=256)
    assert "tensorrt.workspace_mb and tensorrt.tactic_dram_mb" in e.value.fix
    assert not (tmp_path / "trt" / "model.plan").exists()  # a failed build writes no plan


# ----------------------------------------------------------------------------------- deliverable 5: Orin latency
@pytest.mark.parametrize("version", VERSIONS)
def test_per_layer_profile_enqueue_time_and_spin_wait(monkeypatch, tmp_path, version):
    """IProfiler layer times, reported after the stream ran the work (report_to_profiler), every layer of the
    engine; benchmark() splits enqueue from GPU time and can wait by polling the stream (trtexec --useSpinWait)."""
    install(monkeypatch, version)
    runner = load_plan(build(tmp_path).artifact)
    layers = runner.profile_layers(feeds(2), iterations=3)
    assert [x["layer"] for x in layers] == ["relu0", "conv0"]  # the stand-in's markers: later layers "slower"
    assert all(x["runs"] == 3 for x in layers) and abs(sum(x["share"] for x in layers) - 1) < 1e-9
    assert runner.context.profiler is None
    spin = runner.benchmark(feeds(2), warmup=1, iterations=3, spin_wait=True)
    assert spin["spin_wait"] and spin["enqueue"]["n"] == 3 and spin["gpu_compute"]["n"] == 3
    runner.close()


def test_layer_times_exist_only_after_the_stream_ran(standin, tmp_path):
    runner = load_plan(build(tmp_path).artifact)
    seen = []

    class Profiler(standin.trt.IProfiler):
        def __init__(self):
            standin.trt.IProfiler.__init__(self)

        def report_layer_time(self, layer_name, ms):
            seen.append(layer_name)

    runner.context.enqueue_emits_profile = False
    runner.context.profiler = Profiler()
    runner._stage_inputs(feeds(1))
    runner.context.execute_async_v3(runner.stream.handle)
    assert runner.context.report_to_profiler() is False and not seen  # queued, not run
    runner.stream.synchronize()
    assert runner.context.report_to_profiler() is True and seen == ["conv0", "relu0"]
    runner.context.profiler = None
    runner.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_timing_cache_saved_meanwhile_is_merged_not_overwritten(monkeypatch, tmp_path, version):
    """Two builds share a timing cache: the one finishing second combines (ITimingCache.combine) the entries the
    other saved while it built, under a lock, instead of overwriting them."""
    model = install(monkeypatch, version)
    cache = tmp_path / "orin.timing"
    build(tmp_path / "first", timing_cache=str(cache))  # 2 layers: 2 entries
    first = json.loads(cache.read_bytes().split(b"\n", 1)[1])["entries"]
    original = model.trt.Builder.build_serialized_network

    def another_build_saves_meanwhile(self, network, config):
        out = original(self, network, config)
        other = config.create_timing_cache(b"")
        other._state["entries"] = 40  # what the other build's tactics added
        cache.write_bytes(bytes(memoryview(other.serialize())))
        return out

    monkeypatch.setattr(model.trt.Builder, "build_serialized_network", another_build_saves_meanwhile)
    built = build(tmp_path / "second", timing_cache=str(cache))
    saved = json.loads(cache.read_bytes().split(b"\n", 1)[1])["entries"]
    assert saved == first + 2 + 40  # ours (reused + this build's) and the other build's
    assert "merged with the entries another build saved meanwhile" in built.info["timing_cache"]
    assert (tmp_path / "orin.timing.lock").exists()


@pytest.mark.parametrize("version", VERSIONS)
def test_cuda_graph_capture_of_the_enqueue_and_its_fallback(monkeypatch, tmp_path, version):
    """benchmark(cuda_graph=True): the enqueue is captured once (after one plain enqueue) and launched as a graph,
    whose replays compute on each run's inputs; an engine with data-dependent outputs cannot be captured and is
    timed without a graph, saying why (trtexec's fallback)."""
    model = install(monkeypatch, version)
    runner = load_plan(build(tmp_path).artifact)
    x = feeds(2)
    result = runner.benchmark(x, warmup=1, iterations=3, cuda_graph=True)
    assert result["cuda_graph"] == "captured" and result["gpu_compute"]["n"] == 3
    assert not model.cuda.graphs  # destroyed after timing
    np.testing.assert_allclose(runner.run(x)["pred"][:, 0, 0, 0], marker(x["images"]), rtol=1e-5)
    runner.close()
    runner = load_plan(_build_from(tmp_path / "nms", nms_model).artifact)
    feed = {"boxes": np.ones((1, 32, 4), np.float32), "scores": np.ones((1, 1, 32), np.float32)}
    result = runner.benchmark(feed, warmup=1, iterations=2, cuda_graph=True)
    assert result["cuda_graph"].startswith("fallback (no graph)") and "data-dependent" in result["cuda_graph"]
    assert result["gpu_compute"]["n"] == 2 and not model.cuda.capturing
    runner.close()


def test_a_graph_replays_with_each_runs_inputs(standin, tmp_path):
    runner = load_plan(build(tmp_path).artifact)
    runner._stage_inputs(feeds(2, seed=1))
    graph, note = runner.capture_graph()
    assert note == "captured"
    for seed in (2, 3):
        x = feeds(2, seed=seed)
        in_bytes = runner._stage_inputs(x)
        shapes = runner._output_shapes()
        runner._enqueue(in_bytes, shapes, graph=graph)
        runner.stream.synchronize()
        out = runner.host["pred"].view(np.float32, 2 * 8 * 16 * 16).reshape(2, 8, 16, 16)
        np.testing.assert_allclose(out[:, 0, 0, 0], marker(x["images"]), rtol=1e-5)
    graph.destroy()
    runner.close()
