"""Honest status on third-party graphs: Paddle-style dims (-1, '?') and Constant-node weights fold; a pass that could
not be checked is `failed` with its reason (never `unchanged`); `edgedeploy optimize` warns once per pass not applied,
takes --input-shape / --inputs, and exits 1 under --strict; a build is strict for the passes its config asks for."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from cli_helpers import run_cli
from test_graph_helpers import Builder, assert_equal, ops

from edgedeploy.config import load_spec
from edgedeploy.errors import EdgeDeployError
from edgedeploy.graph.optimize import OptimizeReport, OptimizeSettings, PassReport, optimize_model
from edgedeploy.pipeline import require_asked_passes


def paddle_style(flatten_to: int | None = None) -> onnx.ModelProto:
    """x [-1, 3, '?', '?'] (as Paddle's exporter writes it), weights in Constant nodes, Conv → BN → Relu → Conv → BN;
    with `flatten_to` a Reshape that only fits one spatial size (so no chosen size runs it)."""
    b = Builder(as_constants=True)
    x = b.input("x", [-1, 3, "?", "?"])
    y = b.node("Relu", [b.bn(b.conv(x, 3, 4, bias=False), 4)])
    y = b.bn(b.conv(y, 4, 4, k=1), 4, eps=1e-3)
    if flatten_to is not None:
        shape = np.array([0, 4 * flatten_to * flatten_to], np.int64)  # 0: keep the batch dim
        b.nodes.append(onnx.helper.make_node("Constant", [], ["shape"], value=onnx.numpy_helper.from_array(shape)))
        y = b.node("Reshape", [y, "shape"])
    return b.model([y])


def test_minus_one_and_question_mark_dims_fold_and_simplify():
    model = paddle_style()
    out, report = optimize_model(model)
    assert ops(out)["BatchNormalization"] == 0 and ops(out)["Conv"] == 2
    assert [p.status for p in report.passes if p.name == "fold_affine"][0] == "applied"
    assert report.status_of("simplify")[0] in ("applied", "unchanged")
    shapes = report.verification["input_shapes"]["x"]
    assert shapes["shape"] == [2, 3, 64, 64]
    assert shapes["dynamic_axes"] == ["axis 0 = 2 (batch, chosen)", "axis 2 = 64 (chosen)", "axis 3 = 64 (chosen)"]
    assert_equal(model, out, inputs={"x": np.random.default_rng(1).random((1, 3, 20, 36), np.float32)})


def test_a_pass_that_could_not_be_checked_is_failed_never_unchanged():
    model = paddle_style(flatten_to=7)  # runs at 7x7 only: no chosen size fits
    out, report = optimize_model(model)
    assert "every input shape tried" in report.verification["error"]
    fold = report.passes[1]
    assert fold.status == "failed" and "could not be" in fold.reason and "--input-shape" in fold.reason
    simplify = report.passes[-1]
    assert simplify.status == "failed" and "could not be checked" in simplify.reason
    assert "unchanged" not in [p.status for p in report.passes if p.details.get("changed")]
    assert len(report.warnings()) == len(report.not_applied()) >= 2
    assert ops(out)["BatchNormalization"] == 2  # nothing unchecked was kept

    out, report = optimize_model(model, OptimizeSettings(input_shapes={"x": (1, 3, 7, 7)}))
    assert report.status_of("fold_affine")[0] == "applied" and ops(out)["BatchNormalization"] == 0


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_optimize_command_warns_per_pass_and_is_strict_on_request(tmp_path):
    src, out, rep = tmp_path / "m.onnx", tmp_path / "o.onnx", tmp_path / "r.json"
    onnx.save(paddle_style(flatten_to=7), str(src))
    result = run_cli("optimize", str(src), "-o", str(out))
    assert result.returncode == 0, result.stderr
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: pass ")]
    assert [w.split()[2] for w in warnings] == ["fold_affine", "fold_affine", "simplify"]  # one per pass run
    assert "input x: 2x3x64x64" not in result.stderr

    strict = run_cli("optimize", str(src), "-o", str(out), "--strict")
    last = strict.stderr.strip().splitlines()[-1]
    assert strict.returncode == 1 and last.startswith("error:") and "--strict: 3 pass(es) not applied" in last

    fixed = run_cli("optimize", str(src), "-o", str(out), "--strict", "--input-shape", "x:1x3x7x7", "--report", str(rep))
    assert fixed.returncode == 0, fixed.stderr
    assert "input x: 1x3x7x7 (axis 0 = 1 (--input-shape); axis 2 = 7 (--input-shape)" in fixed.stderr
    report = json.loads(rep.read_text())
    assert report["verification"]["drift"] and report["passes"][1]["status"] == "applied"

    np.savez(tmp_path / "in.npz", x=np.random.default_rng(0).random((3, 3, 7, 7), dtype=np.float32))
    given = run_cli("optimize", str(src), "-o", str(out), "--strict", "--inputs", str(tmp_path / "in.npz"))
    assert given.returncode == 0, given.stderr
    assert "axis 2 = 7 (given inputs)" in given.stderr


def test_build_is_strict_for_passes_the_config_asks_for(write_config):
    base = {"name": "m", "model": {"onnx": "m.onnx"}, "inputs": [{"name": "x", "shape": ["n", 3]}]}
    asked = load_spec(write_config({**base, "optimize": {"simplifier": "onnxsim"}}, "asked.yaml"))
    default = load_spec(write_config(base, "default.yaml"))
    report = OptimizeReport(passes=[PassReport("fold_affine", "rolled_back", "outputs changed"),
                                    PassReport("simplify", "failed", "could not be checked: no shape")])
    require_asked_passes(default, report.to_dict())  # default passes only warn
    with pytest.raises(EdgeDeployError, match="simplify, which the config asks for, was failed: could not be"):
        require_asked_passes(asked, report.to_dict())
    pruned = load_spec(write_config({**base, "optimize": {"drop_outputs": ["aux*"]}}, "pruned.yaml"))
    require_asked_passes(pruned, report.to_dict())
    report.passes.append(PassReport("prune", "failed", "boom"))
    with pytest.raises(EdgeDeployError, match="prune"):
        require_asked_passes(pruned, report.to_dict())
