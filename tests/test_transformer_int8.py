"""Transformer-aware INT8: attention is recognised in the graph, `int8.model_type: auto` resolves on it, and the
ONNX Runtime Q/DQ route keeps attention, LayerNorm, Softmax, GELU and the residual adds float while the weight
MatMuls are quantized per channel; the TensorRT calibrator route refuses the setting."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from edgedeploy import export
from edgedeploy.backends import precision_route
from edgedeploy.config import BuildSpec, Int8Settings, QdqSettings
from edgedeploy.errors import UsageError
from edgedeploy.precision import qdq, transformer
from edgedeploy.precision.calibration import CalibrationSet
from edgedeploy.precision.stage import check_precision_request


class _Block(torch.nn.Module):
    """One pre-norm transformer block written out (attention by hand, so the graph holds MatMul→Softmax→MatMul)."""

    def __init__(self, dim: int = 16, sdpa: bool = False):
        super().__init__()
        self.sdpa = sdpa
        torch.manual_seed(0)
        self.norm1, self.norm2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
        self.qkv, self.proj = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
        self.fc1, self.fc2 = torch.nn.Linear(dim, 2 * dim), torch.nn.Linear(2 * dim, dim)

    def forward(self, x):
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        if self.sdpa:  # torch's fused attention: its export puts IsNaN/Where between Softmax and the second MatMul
            b, t, d = q.shape
            q, k, v = (z.reshape(b, t, 2, d // 2).transpose(1, 2) for z in (q, k, v))  # SDPA takes 4-D heads
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
            x = x + self.proj(out)
        else:
            attn = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)
            x = x + self.proj(attn @ v)
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))


class _Cnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).softmax(1)


class _ConvNetWithAttention(torch.nn.Module):
    """A CNN with one attention block on its feature map (YOLO11's C2PSA pattern): six convolutions, four Linears."""

    def __init__(self):
        super().__init__()
        self.convs = torch.nn.Sequential(*[torch.nn.Conv2d(3 if i == 0 else 16, 16, 3, padding=1) for i in range(6)])
        self.block = _Block()

    def forward(self, x):
        y = self.convs(x)
        return self.block(y.flatten(2).transpose(1, 2))


def _export(tmp_path, module, shape, name) -> onnx.ModelProto:
    spec = BuildSpec.model_validate({"model": {"factory": "x:y"}, "inputs": [{"name": "x", "shape": shape}]})
    path = export.export_onnx(spec, module.eval(), tmp_path / f"{name}.onnx")
    return onnx.load(str(path))


def test_attention_is_recognised_and_auto_resolves_on_it(tmp_path):
    block = _export(tmp_path, _Block(), ["batch", 8, 16], "block")
    cnn = _export(tmp_path, _Cnn(), ["batch", 3, 8, 8], "cnn")
    assert transformer.has_attention(block) and not transformer.has_attention(cnn)
    assert len(transformer.activation_matmuls(block)) == 2  # q·kᵀ and attn·v
    assert transformer.model_type(Int8Settings(), block) == "transformer"
    assert transformer.model_type(Int8Settings(), cnn) == "none"
    assert transformer.model_type(Int8Settings(model_type="none"), block) == "none"  # the config's word stands
    assert transformer.has_attention(_export(tmp_path, _Block(sdpa=True), ["batch", 8, 16], "sdpa"))
    hybrid = _export(tmp_path, _ConvNetWithAttention(), ["batch", 3, 8, 8], "hybrid")
    assert transformer.has_attention(hybrid) and not transformer.mostly_matmul_weights(hybrid)
    assert transformer.model_type(Int8Settings(), hybrid) == "none"  # quantized as the CNN it mostly is


@pytest.mark.slow
def test_ort_route_quantizes_only_weight_matmuls_of_a_transformer(tmp_path):
    model = _export(tmp_path, _Block(), ["batch", 8, 16], "block")
    rng = np.random.default_rng(0)
    calib = CalibrationSet(samples=[{"x": rng.standard_normal((1, 8, 16), dtype=np.float32)} for _ in range(8)],
                           ids=[str(i) for i in range(8)], sha256="x", source="generated", format="npy",
                           candidates=8, seed=0, seconds=0.0)
    out = tmp_path / "q.onnx"
    qdq.quantize_ort(tmp_path / "block.onnx", out, calib, QdqSettings(), "onnxruntime", "transformer")
    quantized = onnx.load(str(out))
    producers = {o: n for n in quantized.graph.node for o in n.output}

    def dequantized_inputs(node):
        return sum(1 for i in node.input if i in producers and producers[i].op_type == "DequantizeLinear")

    attention = set(transformer.activation_matmuls(model))
    by_type: dict[str, list] = {}
    for n in quantized.graph.node:
        by_type.setdefault(n.op_type, []).append(n)
    weight_matmuls = [n for n in by_type.get("MatMul", []) + by_type.get("Gemm", []) if n.name not in attention]
    assert weight_matmuls and all(dequantized_inputs(n) == 2 for n in weight_matmuls)  # activation and weight
    for n in by_type.get("MatMul", []):
        if n.name in attention:
            assert dequantized_inputs(n) == 0, n.name
    for op in ("Softmax", "LayerNormalization", "Add", "Erf", "Gelu"):
        for n in by_type.get(op, []):
            assert dequantized_inputs(n) == 0, f"{op} {n.name} runs on dequantized int8"


def test_the_calibrator_route_refuses_a_transformer_model_type():
    spec = BuildSpec.model_validate({"model": {"onnx": "m.onnx"}, "inputs": [{"name": "x", "shape": [1, 3]}],
                                     "target": "trt", "precision": "int8",
                                     "tensorrt": {"int8_route": "calibrator"}, "int8": {"model_type": "transformer"}})
    with pytest.raises(UsageError, match="implicit calibrator .* has no such setting"):
        check_precision_request(spec, precision_route(spec))


def test_a_failing_int8_transformer_built_as_a_cnn_suggests_the_model_type():
    from edgedeploy.validate import notices

    spec = BuildSpec.model_validate({"model": {"onnx": "m.onnx"}, "inputs": [{"name": "x", "shape": [1, 3]}]})
    report = {"precision_stage": {"model_type": {"resolved": "none", "graph_has_attention": True}},
              "checks": [{"name": "logits.rel_l2", "passed": False, "status": "fail"}]}
    (hint,) = notices.int8_transformer_as_cnn(report, spec)
    assert "int8.model_type: transformer" in hint["message"]
    report["precision_stage"]["model_type"]["resolved"] = "transformer"
    assert notices.int8_transformer_as_cnn(report, spec) == []
