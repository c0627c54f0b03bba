"""End to end on a real exporter's graph: a MobileNetV2-style model exported by torch.onnx (dynamo, BN unfused)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from test_graph_helpers import assert_equal, ops

from edgedeploy.graph.optimize import OptimizeSettings, optimize_file, optimize_model
from edgedeploy.graph.simplify import run_onnxsim, run_onnxslim

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export's own deprecation chatter
torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
nn = torch.nn


class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        layers = [] if expand == 1 else [ConvBNReLU6(cin, hidden, 1)]
        layers += [
            ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, cout, 1, bias=False),  # linear bottleneck
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class TinyMobileNetV2(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        layers = [ConvBNReLU6(3, 8, 3, 2)]
        cin = 8
        for expand, cout, repeats, stride in [(1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2), (6, 24, 1, 1)]:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(ConvBNReLU6(cin, 64, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyMobileNetV2().eval()
    with torch.no_grad():  # non-trivial running statistics, so a wrong fold shows
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 32, 32)
    path = tmp_path_factory.mktemp("mnv2") / "raw.onnx"
    program = torch.onnx.export(
        model,
        (x,),
        dynamo=True,
        optimize=False,  # keep BatchNormalization unfused, as a raw export would
        external_data=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
    )
    program.save(str(path))
    with torch.no_grad():
        expected = model(x).numpy()
    return path, x.numpy(), expected


def test_mobilenet_v2_optimizes_to_no_batchnorm_with_equal_outputs(exported, tmp_path):
    path, x, expected = exported
    raw = onnx.load(path)
    assert ops(raw)["BatchNormalization"] > 0  # the export kept them: this is what we must fold

    report = optimize_file(path, tmp_path / "deploy.onnx", OptimizeSettings(), real_inputs={"x": x})
    out = onnx.load(tmp_path / "deploy.onnx")
    assert ops(out)["BatchNormalization"] == 0
    assert ops(out)["Conv"] == ops(raw)["Conv"]  # every BN folded into its conv, none left as Mul/Add
    assert ops(out)["Mul"] == 0
    assert all(p.status in ("applied", "unchanged") for p in report.passes), report.summary()
    assert_equal(raw, out, inputs={"x": x}, dynamic_dim=3)

    from edgedeploy.graph.verify import run

    got = run(out, {"x": x})["logits"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)  # and it still matches PyTorch


def test_mobilenet_v2_ours_is_no_bigger_than_either_simplifier_alone(exported):
    raw = onnx.load(exported[0])
    ours, _ = optimize_model(raw)
    assert len(ours.graph.node) <= min(len(run_onnxsim(raw).graph.node), len(run_onnxslim(raw).graph.node))
