"""Small real ONNX models and calibration data for the TensorRT conformance tests (written with `onnx`, no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_model(path: Path, *, batch: int | str = "batch", op: str = "Relu", name: str = "relu0",
               resize: bool = False) -> Path:
    """images [batch, 3, 16, 16] → Conv(3→8, 3x3) → op (→ Resize ×1 when `resize`) → pred [batch, 8, 16, 16].

    An `op` outside the default domain makes a node TensorRT's parser has no importer for."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "b")
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 16, 16])
    y = helper.make_tensor_value_info("pred", TensorProto.FLOAT, [batch, 8, 16, 16])
    last = "act" if resize else "pred"
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c"], [last], name=name, domain="" if op == "Relu" else "mystery.domain")]
    inits = [w, b]
    if resize:
        inits.append(numpy_helper.from_array(np.ones(4, np.float32), "scales"))
        nodes.append(helper.make_node("Resize", [last, "", "scales"], ["pred"], name="resize0", mode="nearest"))
    opsets = [helper.make_opsetid("", 17)] + ([] if op == "Relu" else [helper.make_opsetid("mystery.domain", 1)])
    return _save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=opsets), path)


def bf16_io_model(path: Path) -> Path:
    """bfloat16 in and out (Cast → Conv → Cast): a model whose I/O numpy has no type for."""
    w = numpy_helper.from_array(np.full((8, 3, 1, 1), 0.1, np.float32), "w")
    x = helper.make_tensor_value_info("images", TensorProto.BFLOAT16, ["batch", 3, 16, 16])
    y = helper.make_tensor_value_info("pred", TensorProto.BFLOAT16, ["batch", 8, 16, 16])
    nodes = [helper.make_node("Cast", ["images"], ["x32"], name="in_cast", to=TensorProto.FLOAT),
             helper.make_node("Conv", ["x32", "w"], ["y32"], name="conv0"),
             helper.make_node("Cast", ["y32"], ["pred"], name="out_cast", to=TensorProto.BFLOAT16)]
    return _save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]),
                                   opset_imports=[helper.make_opsetid("", 17)]), path)


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 9  # opset 17's; newer onnx writes an IR the Python 3.10 device set's ONNX Runtime cannot read
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def qdq_model(path: Path, batch: int | str = "batch") -> Path:
    """The conv model with a QuantizeLinear/DequantizeLinear pair on its input (the shape of an int8 Q/DQ graph)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "w")
    scale = numpy_helper.from_array(np.array(0.02, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 16, 16])
    y = helper.make_tensor_value_info("pred", TensorProto.FLOAT, [batch, 8, 16, 16])
    nodes = [helper.make_node("QuantizeLinear", ["images", "s", "z"], ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq0"),
             helper.make_node("Conv", ["dq", "w"], ["pred"], name="conv0", pads=[1, 1, 1, 1])]
    return _save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, scale, zero]),
                                   opset_imports=[helper.make_opsetid("", 17)]), path)


def quantized_twin(path: Path, batch: int | str = "batch") -> Path:
    """conv_model's graph (conv0 → relu0, same weights and node names) with Q/DQ on the conv's input and weight and
    on the ReLU's input: the shape of the Q/DQ graph the precision stage makes of deploy.onnx, with both layers
    quantized, so a layer-by-layer comparison has the float graph's twins to match."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, (8,)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array(0.02, np.float32), "s"),
             numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
             numpy_helper.from_array(np.array(0, np.int8), "z")]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 16, 16])
    y = helper.make_tensor_value_info("pred", TensorProto.FLOAT, [batch, 8, 16, 16])
    nodes = [helper.make_node("QuantizeLinear", ["images", "s", "z"], ["images_q"], name="images_q"),
             helper.make_node("DequantizeLinear", ["images_q", "s", "z"], ["images_dq"], name="images_dq"),
             helper.make_node("QuantizeLinear", ["w", "ws", "z"], ["w_q"], name="w_q"),
             helper.make_node("DequantizeLinear", ["w_q", "ws", "z"], ["w_dq"], name="w_dq"),
             helper.make_node("Conv", ["images_dq", "w_dq", "b"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "s", "z"], ["c_q"], name="c_q"),
             helper.make_node("DequantizeLinear", ["c_q", "s", "z"], ["c_dq"], name="c_dq"),
             helper.make_node("Relu", ["c_dq"], ["pred"], name="relu0")]
    return _save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                                   opset_imports=[helper.make_opsetid("", 17)]), path)


def deploy_folder(folder: Path, *, batch: int | str = "batch") -> Path:
    """A deploy folder holding what the precision routes read: deploy.onnx, deploy.fp16.onnx, deploy.int8.qdq.onnx."""
    conv_model(folder / "deploy.onnx", batch=batch)
    conv_model(folder / "deploy.fp16.onnx", batch=batch)  # the stand-in reads structure, not precision
    qdq_model(folder / "deploy.int8.qdq.onnx", batch=batch)
    return folder / "deploy.onnx"


def nms_model(path: Path, boxes: int = 32) -> Path:
    """An end-to-end detector's tail: boxes [1, N, 4] and scores [1, 1, N] → NonMaxSuppression → selected [K, 3]
    (int64), K known only after execution: the data-dependent output TensorRT needs an IOutputAllocator for."""
    consts = [numpy_helper.from_array(np.array([boxes], np.int64), "max_out"),
              numpy_helper.from_array(np.array([0.5], np.float32), "iou"),
              numpy_helper.from_array(np.array([0.0], np.float32), "score_threshold")]
    inputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, boxes, 4]),
              helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, boxes])]
    out = helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou", "score_threshold"],
                            ["selected"], name="nms0")
    return _save(helper.make_model(helper.make_graph([node], "g", inputs, [out], consts),
                                   opset_imports=[helper.make_opsetid("", 17)]), path)


def reshape_model(path: Path) -> Path:
    """images [batch, 3, 16, 16] → Conv → Reshape to the values of the `shape` input (an int64 shape tensor, which
    TensorRT reads from host memory) → flat."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "w")
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 16, 16]),
              helper.make_tensor_value_info("shape", TensorProto.INT64, [2])]
    out = helper.make_tensor_value_info("flat", TensorProto.FLOAT, [None, None])
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "shape"], ["flat"], name="reshape0")]
    return _save(helper.make_model(helper.make_graph(nodes, "g", inputs, [out], [w]),
                                   opset_imports=[helper.make_opsetid("", 17)]), path)


def calibration_npz(path: Path, samples: int = 24) -> Path:
    rng = np.random.default_rng(3)
    np.savez(path, images=rng.normal(size=(samples, 3, 16, 16)).astype(np.float32))
    return path


def feeds(batch: int, seed: int = 1) -> dict[str, np.ndarray]:
    return {"images": np.random.default_rng(seed).normal(size=(batch, 3, 16, 16)).astype(np.float32)}


def marker(images: np.ndarray) -> np.ndarray:
    """What the stand-in writes into every element of output sample b: the sum of input sample b (not a result)."""
    return images.reshape(len(images), -1).astype(np.float64).sum(axis=1)


__all__ = ["bf16_io_model", "calibration_npz", "conv_model", "deploy_folder", "feeds", "marker", "nms_model",
           "qdq_model", "reshape_model"]
