"""Streaming a validation set through a real runner (ONNX Runtime, a small classifier made here): only the tensor
sample's outputs are kept, task results for every sample, and the task figures equal those computed with every
output tensor in memory; task results survive reference.npz's flat arrays."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgedeploy.config import ValidationSettings
from edgedeploy.ort_runner import OnnxRuntimeRunner
from edgedeploy.preprocess import ValidationSet, data_batches
from edgedeploy.tasks import TASKS, classification, detection
from edgedeploy.tasks.base import TaskResults
from edgedeploy.tasks.decoders.base import Detections
from edgedeploy.validate.evaluate import collect, runner_batches

SAMPLES, KEEP, CLASSES = 203, 16, 12


def classifier(path, seed: int) -> OnnxRuntimeRunner:
    w = np.random.default_rng(seed).normal(size=(32, CLASSES)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", CLASSES])],
                              [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return OnnxRuntimeRunner(path)


def test_only_the_tensor_sample_is_kept_and_the_figures_are_those_of_every_tensor(tmp_path):
    x = np.random.default_rng(0).normal(size=(SAMPLES, 32)).astype(np.float32)
    data = ValidationSet({"x": x[:KEEP]}, None, "x", count=SAMPLES, stream=data_batches({"x": x}))
    settings = ValidationSettings(task="classification")
    labels = np.random.default_rng(1).integers(0, CLASSES, SAMPLES)

    def decode(outputs):
        return classification.decode(settings, outputs)

    reference = classifier(tmp_path / "ref.onnx", 0)
    # the candidate: the reference's weights and a little noise, so some top-1s differ
    w = numpy_helper.to_array(onnx.load(tmp_path / "ref.onnx").graph.initializer[0])
    noisy = w + np.random.default_rng(2).normal(scale=0.3, size=w.shape).astype(np.float32)
    model = onnx.load(tmp_path / "ref.onnx")
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(noisy, "w"))
    onnx.save(model, tmp_path / "art.onnx")
    artifact = OnnxRuntimeRunner(tmp_path / "art.onnx")

    ref = collect(runner_batches(reference), data.batches(8), KEEP, decode)
    art = collect(runner_batches(artifact, 8), data.batches(8), KEEP, decode)
    assert {k: v.shape for k, v in art.tensors.items()} == {"y": (KEEP, CLASSES)}
    assert len(art.results.items) == SAMPLES and art.nonfinite == {"y": (0, 0, SAMPLES * CLASSES)}

    streamed = classification.score(settings, ref.results, art.results, None, labels)
    in_memory = classification.evaluate(reference.run({"x": x})["y"], artifact.run({"x": x})["y"], labels)
    assert streamed == {"output": "y", **in_memory}
    assert 0 < streamed["top1_agreement"] < 1  # the noise changed some predictions: the figures are not trivial


def test_task_results_round_trip_through_flat_arrays():
    rng = np.random.default_rng(0)
    dets = [Detections(rng.random((k, 4)) * 64, rng.random(k), rng.integers(0, 5, k), keypoints=rng.random((k, 3, 3)))
            for k in (3, 0, 7, 1)]
    info = {"task": "detection", "decoder": "yolo-pose"}
    back = detection.unpack(detection.pack(TaskResults(info, dets)), info)
    assert back.info == info and len(back.items) == 4
    for a, b in zip(dets, back.items):
        for field in ("boxes", "scores", "classes", "keypoints"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    top = TaskResults({"task": "classification", "output": "y", "classes": 3}, list(rng.integers(0, 3, (5, 3))))
    assert np.array_equal(np.array(TASKS["classification"].unpack(classification.pack(top), top.info).items),
                          np.array(top.items))
