"""Issue 22's audit findings of the TensorRT/CUDA layer, one test each (each fails on the code before its fix), run
against the conformance stand-in of NVIDIA's recorded API surfaces (tests/trt_standin)."""

from __future__ import annotations

import numpy as np
import pytest
from trt_standin import install, surface_versions
from trt_standin.cuda import cudaStream_t
from trt_standin.models import deploy_folder, feeds, marker

from edgedeploy.backends import trt_cuda

from edgedeploy.backends.tensorrt import TensorRTBackend, load_plan
from edgedeploy.config import TensorRTSettings

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
