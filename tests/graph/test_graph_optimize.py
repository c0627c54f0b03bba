"""optimize_model / optimize_file: passes in order, each verified; a wrong pass is rolled back; files handled safely."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from test_graph_helpers import Builder, assert_equal, ops

import edgedeploy.graph.optimize as optimize_mod
from edgedeploy.errors import UsageError
from edgedeploy.graph.fold_affine import fold_affine
from edgedeploy.graph.optimize import DEFAULT_PASSES, OptimizeSettings, optimize_file, optimize_model

FAST = OptimizeSettings(simplifier="none")


def small_detector(dtype=np.float32):
    """conv-BN-ReLU → RepConv block → lead head; an aux head with its own conv."""
    b = Builder(dtype=dtype)
    x = b.input("images", ["N", 3, 8, 8])
    f = b.node("Relu", [b.bn(b.conv(x, 3, 4, bias=False), 4)])
    t3 = b.bn(b.conv(f, 4, 4, bias=False), 4)
    t1 = b.bn(b.conv(f, 4, 4, k=1, bias=False), 4)
    rep = b.node("Add", [b.node("Add", [t3, t1]), b.bn(f, 4)])
    f2 = b.node("Relu", [rep])
    ia = b.node("Add", [f2, b.weight("ia", b.rng.standard_normal((1, 4, 1, 1)))])
    pred = b.node("Mul", [b.conv(ia, 4, 6, k=1), b.weight("im", b.rng.uniform(0.5, 2, (1, 6, 1, 1)))])
    b.nodes.append(onnx.helper.make_node("Identity", [pred], ["pred"]))
    b.nodes.append(onnx.helper.make_node("Identity", [b.conv(f2, 4, 2, k=1)], ["aux_p3"]))
    return b.model(["pred", "aux_p3"])


def test_default_pipeline_folds_merges_and_prunes():
    model = small_detector()
    out, report = optimize_model(model, OptimizeSettings(drop_outputs=["aux*"]))
    assert_equal(model, out)
    assert [o.name for o in out.graph.output] == ["pred"]
    assert ops(out)["BatchNormalization"] == 0
    assert ops(out)["Conv"] == 3  # stem, merged RepConv, head (ImplicitA/M folded in)
    assert [p.name for p in report.passes] == list(DEFAULT_PASSES)
    assert all(p.status in ("applied", "unchanged") for p in report.passes)
    assert report.passes[0].status == "applied"  # prune
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    p1 = d["passes"][1]
    assert set(p1) >= {"name", "status", "reason", "nodes_before", "nodes_after", "params_before", "params_after"}
    assert set(p1) >= {"errors", "wall_s", "details"}
    assert p1["errors"]["pred"]["rel_l2"] <= 1e-5
    assert d["node_count_after"] < d["node_count_before"]


def test_wrong_pass_is_rolled_back(monkeypatch):
    def corrupting_fold(model, settings, real_inputs):
        out, stats = fold_affine(model)
        t = out.graph.initializer[0]
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 1.5, t.name))
        return out, stats

    monkeypatch.setitem(optimize_mod.PASSES, "fold_affine", corrupting_fold)
    model = small_detector()
    out, report = optimize_model(model, FAST)
    assert report.status_of("fold_affine") == ["rolled_back", "rolled_back"]
    rb = next(p for p in report.passes if p.status == "rolled_back")
    assert "rel_l2" in rb.reason and rb.errors["pred"]["rel_l2"] > 1e-5
    assert_equal(model, out)  # the corruption never reached the result
    assert report.status_of("merge_branches") == ["applied"]


def test_pass_that_raises_is_reported_failed(monkeypatch):
    def boom(model, settings, real_inputs):
        raise ValueError("pass bug")

    monkeypatch.setitem(optimize_mod.PASSES, "merge_branches", boom)
    model = small_detector()
    out, report = optimize_model(model, FAST)
    mb = next(p for p in report.passes if p.name == "merge_branches")
    assert mb.status == "failed" and "pass bug" in mb.reason
    assert_equal(model, out)


def test_pass_whose_result_fails_the_checker_is_rolled_back(monkeypatch):
    def invalid(model, settings, real_inputs):
        out, stats = fold_affine(model)
        out.graph.node[0].input[0] = "no_such_tensor"
        return out, stats

    monkeypatch.setitem(optimize_mod.PASSES, "fold_affine", invalid)
    _, report = optimize_model(small_detector(), FAST)
    assert report.status_of("fold_affine")[0] == "rolled_back"
    assert "checker" in report.passes[1].reason


def test_unknown_kept_output_is_a_usage_error():
    with pytest.raises(UsageError, match="Choose from the model.s outputs"):
        optimize_model(small_detector(), OptimizeSettings(keep_outputs=["boxes"]))


def test_bad_settings_are_usage_errors():
    with pytest.raises(UsageError):
        optimize_model(small_detector(), OptimizeSettings(passes=("fold_bn",)))
    with pytest.raises(UsageError):
        optimize_model(small_detector(), OptimizeSettings(simplifier="magic"))


def test_real_inputs_are_verified_too():
    model = small_detector()
    real = {"images": np.full((1, 3, 8, 8), 0.25, np.float32)}
    out, report = optimize_model(model, FAST, real_inputs=real)
    assert_equal(model, out, inputs=real)
    assert report.status_of("fold_affine")[0] == "applied"


def test_fp16_model_uses_the_half_tolerance():
    model = small_detector(dtype=np.float16)
    out, report = optimize_model(model, FAST)
    assert report.status_of("fold_affine")[0] == "applied"
    assert ops(out)["BatchNormalization"] == 0
    assert_equal(model, out, tol=OptimizeSettings().half_tolerance)


def test_input_model_is_not_modified():
    model = small_detector()
    before = model.SerializeToString()
    optimize_model(model, FAST)
    assert model.SerializeToString() == before


# ------------------------------------------------------------------------------------------------ files


def test_optimize_file_writes_a_checked_model(tmp_path):
    src, dst = tmp_path / "raw.onnx", tmp_path / "out" / "deploy.onnx"
    model = small_detector()
    onnx.save(model, src)
    report = optimize_file(src, dst, FAST)
    out = onnx.load(dst)
    onnx.checker.check_model(out)
    assert_equal(model, out)
    assert report.output_path == str(dst)
    json.dumps(report.to_dict())
    assert [p.name for p in tmp_path.joinpath("out").iterdir()] == ["deploy.onnx"]  # no temp files left


def test_optimize_file_reads_external_data(tmp_path):
    src = tmp_path / "raw.onnx"
    model = small_detector()
    # onnx.save moves the weights of the model it is given out to the file: save a copy
    onnx.save(small_detector(), src, save_as_external_data=True, location="raw.onnx.data", size_threshold=0)
    assert (tmp_path / "raw.onnx.data").stat().st_size > 0
    optimize_file(src, tmp_path / "deploy.onnx", FAST)
    assert_equal(model, onnx.load(tmp_path / "deploy.onnx"))


def test_missing_external_data_names_the_file(tmp_path):
    src = tmp_path / "raw.onnx"
    onnx.save(small_detector(), src, save_as_external_data=True, location="w.data", size_threshold=0)
    (tmp_path / "w.data").unlink()
    with pytest.raises(UsageError, match="w.data"):
        optimize_file(src, tmp_path / "deploy.onnx", FAST)


def test_missing_file_is_a_usage_error_naming_it(tmp_path):
    with pytest.raises(UsageError, match="nope.onnx"):
        optimize_file(tmp_path / "nope.onnx", tmp_path / "out.onnx", FAST)


def test_corrupt_file_is_a_usage_error_naming_it(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage-not-a-protobuf\xff\xff\xff")
    with pytest.raises(UsageError) as err:
        optimize_file(bad, tmp_path / "out.onnx", FAST)
    assert "bad.onnx" in str(err.value)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.97])
def test_truncated_file_is_a_usage_error_naming_it(tmp_path, fraction):
    data = small_detector().SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(UsageError) as err:
        optimize_file(cut, tmp_path / "out.onnx", FAST)
    assert "cut.onnx" in str(err.value)


def test_failed_run_keeps_an_existing_output(tmp_path, monkeypatch):
    dst = tmp_path / "deploy.onnx"
    dst.write_bytes(b"previous good artifact")
    src = tmp_path / "raw.onnx"
    onnx.save(small_detector(), src)
    with pytest.raises(UsageError):
        optimize_file(src, dst, OptimizeSettings(keep_outputs=["boxes"]))
    assert dst.read_bytes() == b"previous good artifact"
