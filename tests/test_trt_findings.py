"""Issue 22's audit findings of the TensorRT/CUDA layer, one test each (each fails on the code before its fix), run
against the conformance stand-in of NVIDIA's recorded API surfaces (tests/trt_standin)."""

from __future__ import annotations

import pytest
from trt_standin import install, surface_versions
from trt_standin.cuda import cudaStream_t
from trt_standin.models import deploy_folder, feeds

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
