"""The bundled demo detector: shapes, state_dict compatibility, ONNX export (both modes), artifacts, data."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.export import Dim

from edgedeploy.demo.data import (
    IMG_SIZE,
    MAX_DIGITS_PER_IMAGE,
    TRAIN_SAMPLES,
    digit_pool,
    make_detection_set,
    to_input,
)
from edgedeploy.demo.model import OUTPUT_NAMES, OUTPUT_NAMES_AUX, DemoDetector, RepConv, build_demo

DEMO_DIR = Path(__file__).resolve().parents[1] / "edgedeploy" / "demo"
N_PRED = 3 * (8 * 8 + 4 * 4)


def _randomized(aux: bool) -> DemoDetector:
    """A model with non-trivial BN statistics/affine params, so the export checks are not vacuous."""
    torch.manual_seed(0)
    m = build_demo(aux=aux)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                mod.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                mod.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return m.eval()


def _export(model: nn.Module, optimize: bool) -> onnx.ModelProto:
    names = list(OUTPUT_NAMES_AUX if model.aux else OUTPUT_NAMES)
    prog = torch.onnx.export(
        model,
        (torch.rand(2, 3, IMG_SIZE, IMG_SIZE),),
        dynamo=True,
        input_names=["images"],
        output_names=names,
        dynamic_shapes={"images": {0: Dim("batch")}},
        external_data=False,
        optimize=optimize,
        verbose=False,
    )
    return prog.model_proto


@pytest.fixture(scope="module")
def onnx_plain_optimized():
    m = _randomized(aux=False)
    return m, _export(m, optimize=True)


@pytest.fixture(scope="module")
def onnx_aux_unoptimized():
    m = _randomized(aux=True)
    return m, _export(m, optimize=False)


# ----------------------------------------------------------------------------------------------- torch model
def test_shapes_and_param_budget():
    x = torch.rand(3, 3, IMG_SIZE, IMG_SIZE)
    m = build_demo().eval()
    pred = m(x)
    assert isinstance(pred, torch.Tensor) and pred.shape == (3, N_PRED, 15)
    # decoded: everything after sigmoid except xywh, which are pixels
    assert torch.all((pred[..., 4:] >= 0) & (pred[..., 4:] <= 1))
    assert torch.all(pred[..., 2:4] > 0)
    ma = build_demo(aux=True).eval()
    out = ma(x)
    assert isinstance(out, tuple) and [tuple(t.shape) for t in out] == [(3, N_PRED, 15), (3, 45, 8, 8), (3, 45, 4, 4)]
    lead, aux = m.forward_raw(x)
    assert [tuple(t.shape) for t in lead] == [(3, 45, 8, 8), (3, 45, 4, 4)]
    assert [tuple(t.shape) for t in aux] == [(3, 45, 8, 8), (3, 45, 4, 4)]
    assert sum(p.numel() for p in m.parameters()) < 1_000_000
    # RepConv with and without identity branch
    reps = [mod for mod in m.modules() if isinstance(mod, RepConv)]
    assert any(r.rbr_identity is not None for r in reps) and any(r.rbr_identity is None for r in reps)
    # grids/anchors are non-persistent buffers: not in the state_dict
    assert not any("grid" in k for k in m.state_dict())


def test_decode_matches_yolov7_formula():
    m = build_demo().eval()
    x = torch.rand(1, 3, IMG_SIZE, IMG_SIZE)
    with torch.no_grad():
        lead, _ = m.forward_raw(x)
        pred = m(x)
    raw = lead[1].view(1, 3, 15, 4, 4).permute(0, 1, 3, 4, 2).sigmoid()  # P4, stride 16
    a, gy, gx = 2, 1, 3
    row = pred[0, 3 * 64 + a * 16 + gy * 4 + gx]
    s = raw[0, a, gy, gx]
    anchor = m.detect.anchor_grid1[0, a, 0, 0]
    torch.testing.assert_close(row[0], (s[0] * 2 - 0.5 + gx) * 16)
    torch.testing.assert_close(row[1], (s[1] * 2 - 0.5 + gy) * 16)
    torch.testing.assert_close(row[2:4], (s[2:4] * 2) ** 2 * anchor)
    torch.testing.assert_close(row[4:], s[4:])


def test_state_dict_loads_strictly_into_both_variants():
    sd = build_demo(aux=True).state_dict()
    build_demo(aux=False).load_state_dict(sd, strict=True)
    build_demo(aux=True).load_state_dict(build_demo(aux=False).state_dict(), strict=True)


def test_committed_weights(tmp_path):
    path = DEMO_DIR / "weights.pt"
    assert path.stat().st_size <= 5 * 1024 * 1024
    sd = torch.load(path, weights_only=True, map_location="cpu")
    for aux in (False, True):
        m = build_demo(aux=aux)
        m.load_state_dict(sd, strict=True)
    images = np.load(DEMO_DIR / "eval.npz", allow_pickle=False)["images"][:4]
    pred = m.eval()(torch.from_numpy(to_input(images)))[0]
    assert torch.isfinite(pred).all()
    assert float(pred[..., 4].max()) > 0.5  # a trained model finds digits


# ----------------------------------------------------------------------------------------------- ONNX export
def _ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


def _check_against_torch(torch_model: nn.Module, proto: onnx.ModelProto) -> None:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for bs in (1, 3):  # dynamic batch
        x = torch.rand(bs, 3, IMG_SIZE, IMG_SIZE)
        with torch.no_grad():
            ref = torch_model(x)
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = sess.run(None, {"images": x.numpy()})
        assert len(got) == len(ref)
        for g, r in zip(got, ref):
            assert g.shape == tuple(r.shape)
            np.testing.assert_allclose(g, r.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_export_optimized_plain(onnx_plain_optimized):
    m, proto = onnx_plain_optimized
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["pred"]
    dims = [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [N_PRED, 15]
    ops = _ops(proto)
    # RepConv is not fused: its 3x3 and 1x1 convs stay separate and its identity BN stays a BatchNormalization
    n_conv_lead = sum(isinstance(mod, nn.Conv2d) for mod in m.modules()) - len(m.aux_head.m)
    assert ops["Conv"] == n_conv_lead
    n_identity = sum(isinstance(mod, RepConv) and mod.rbr_identity is not None for mod in m.modules())
    assert ops["BatchNormalization"] >= n_identity >= 1
    _check_against_torch(m, proto)


@pytest.mark.slow
def test_export_unoptimized_aux(onnx_aux_unoptimized):
    m, proto = onnx_aux_unoptimized
    onnx.checker.check_model(proto)
    assert [o.name for o in proto.graph.output] == ["pred", "aux_p3", "aux_p4"]
    ops = _ops(proto)
    assert ops["BatchNormalization"] == sum(isinstance(mod, nn.BatchNorm2d) for mod in m.modules())
    assert ops["Conv"] == sum(isinstance(mod, nn.Conv2d) for mod in m.modules())
    _check_against_torch(m, proto)


# ----------------------------------------------------------------------------------------------- data
def test_dataset_is_deterministic_and_sane():
    a_img, a_t = make_detection_set(16, "train", 7)
    b_img, b_t = make_detection_set(16, "train", 7)
    assert a_img.tobytes() == b_img.tobytes() and a_t.tobytes() == b_t.tobytes()
    c_img, _ = make_detection_set(16, "train", 8)
    d_img, _ = make_detection_set(16, "heldout", 7)
    assert c_img.tobytes() != a_img.tobytes() and d_img.tobytes() != a_img.tobytes()
    assert a_img.shape == (16, 64, 64, 3) and a_img.dtype == np.uint8
    assert a_t.dtype == np.float32 and a_t.shape[1] == 6
    counts = np.bincount(a_t[:, 0].astype(int), minlength=16)
    assert counts.min() >= 1 and counts.max() <= MAX_DIGITS_PER_IMAGE
    assert set(np.unique(a_t[:, 1]).astype(int)) <= set(range(10))
    w, h = a_t[:, 4] - a_t[:, 2], a_t[:, 5] - a_t[:, 3]
    assert (a_t[:, 2:] >= 0).all() and (a_t[:, 2:] <= IMG_SIZE).all()
    assert (w > 0).all() and (h > 0).all() and (w <= 28).all() and (h <= 28).all()


def test_pools_are_disjoint():
    tr, _ = digit_pool("train")
    ho, _ = digit_pool("heldout")
    assert len(tr) == TRAIN_SAMPLES and len(tr) + len(ho) == 1797
    with pytest.raises(ValueError):
        digit_pool("test")  # type: ignore[arg-type]


def test_eval_set_matches_generator():
    with np.load(DEMO_DIR / "eval.npz", allow_pickle=False) as z:
        images, targets = z["images"], z["targets"]
    assert images.shape == (300, 64, 64, 3) and images.dtype == np.uint8
    assert targets.dtype == np.float32 and targets.shape[1] == 6
    img, tgt = make_detection_set(300, "heldout", 1000)
    assert img.tobytes() == images.tobytes() and tgt.tobytes() == targets.tobytes()


def test_to_input():
    img = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    x = to_input(img)
    assert x.shape == (2, 3, 4, 5) and x.dtype == np.float32
    np.testing.assert_allclose(x[1, 2, 3, 4], img[1, 3, 4, 2] / 255.0)
