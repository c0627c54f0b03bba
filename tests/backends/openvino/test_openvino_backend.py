"""The openvino target: its registry entry (NNCF int8, weight-compressed fp16, the bf16/fp16 candidate by CPU
flags), its IR build and its runner."""

from __future__ import annotations

import numpy as np
import pytest

from backend_helpers import expected, mlp_onnx
from edgedeploy.backends import TARGETS, backend_settings, get_backend, precision_route
from edgedeploy.config import OpenVINOSettings
from edgedeploy.errors import UsageError


@pytest.mark.parametrize("precision, weights", [("fp32", "fp32"), ("fp16", "fp16")])
def test_build_writes_an_ir_that_computes_the_graph(tmp_path, precision, weights):
    backend = get_backend("openvino")
    built = backend.build(mlp_onnx(tmp_path), tmp_path / "openvino", precision, OpenVINOSettings())
    assert built.artifact.name == "model.xml" and all(f.is_file() for f in built.files)
    assert built.info["weights"] == weights
    runner = backend.load(built, OpenVINOSettings(), threads=1)
    x = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    tolerance = 1e-5 if precision == "fp32" else 2e-2
    np.testing.assert_allclose(runner.run({"x": x})["y"], expected(x), rtol=tolerance, atol=tolerance)


def test_int8_builds_only_from_the_precision_stage_ir(tmp_path):
    with pytest.raises(UsageError, match="NNCF-quantized IR"):
        get_backend("openvino").build(mlp_onnx(tmp_path), tmp_path / "out", "int8")


def test_registry_entry(demo_spec):
    spec = demo_spec.model_copy(update={"target": "openvino"})
    route = precision_route(spec)
    assert (route.fp16, route.int8) == ("backend", "nncf-openvino") and "compress_to_fp16" in route.fp16_method
    assert backend_settings(spec) is spec.openvino
    kind = TARGETS["openvino"]
    assert kind.fp16_candidate(spec, lambda: {"avx2", "amx_bf16"}) == ("bf16", None, "bf16")
    assert kind.fp16_candidate(spec, lambda: {"avx2", "avx512_fp16"}) == ("fp16", None, None)
    name, skipped, _ = kind.fp16_candidate(spec, lambda: {"avx2"})
    assert name == "fp16" and "no bf16/fp16 arithmetic" in skipped
    gpu = spec.model_copy(update={"openvino": OpenVINOSettings(device="GPU")})
    assert kind.fp16_candidate(gpu, lambda: set()) == ("fp16", None, None)
    assert kind.with_hint(spec, "bf16").openvino.inference_precision == "bf16"
