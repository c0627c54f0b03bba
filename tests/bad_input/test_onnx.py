"""The bad-input matrix: onnx."""

from __future__ import annotations

import numpy as np
import pytest

from bad_input.matrix import (
    HW, Run, build, conv_model, external_weight_run, inverse_model, matrix_test, registry, scaled_model)

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


@case("ONNX file missing", 2, "model.onnx not found", "check model.onnx")
def _(bench, here, out):
    return Run(build(bench.config(here, here / "none.onnx"), out), (str(here / "none.onnx"),))


@case("ONNX corrupt (random bytes)", 2, "not a readable ONNX model", "Re-export the model")
def _(bench, here, out):
    (here / "m.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    return Run(build(bench.config(here, here / "m.onnx"), out), (str(here / "m.onnx"),))


@case("ONNX truncated (first half)", 2, "not a readable ONNX model", "Re-export the model")
def _(bench, here, out):
    data = (bench.root / "conv.onnx").read_bytes()
    (here / "m.onnx").write_bytes(data[: len(data) // 2])
    return Run(build(bench.config(here, here / "m.onnx"), out), (str(here / "m.onnx"),))


@case("external data outside the folder (../)", 2, "outside the model's folder; refused",
      "move the data file into the model's folder")
def _(bench, here, out):
    return external_weight_run(bench, here, out, "../secret.bin")


@case("external data at an absolute path", 2, "outside the model's folder; refused",
      "move the data file into the model's folder")
def _(bench, here, out):
    return external_weight_run(bench, here, out, "/etc/passwd")


@case("external data file missing", 2, "not found", "copy the data file next to the model")
def _(bench, here, out):
    return external_weight_run(bench, here, out, "weights.bin")


@case("input name not in the model", 2, "the model has no input 'pixels' (its inputs: images)",
      "set inputs[].name")
def _(bench, here, out):
    config = bench.config(here, inputs=[{"name": "pixels", "shape": ["batch", 3, HW, HW]}])
    return Run(build(config, out), (str(bench.root / "conv.onnx"),))


@case("input shape differs from the model", 2,
      f"input 'images' has shape [batch, 3, {HW}, {HW}] in the model, the config says [batch, 3, 32, 32]",
      "make inputs[].shape match the model")
def _(bench, here, out):
    config = bench.config(here, inputs=[{"name": "images", "shape": ["batch", 3, 32, 32]}])
    return Run(build(config, out), (str(bench.root / "conv.onnx"),))


@case("input rank differs from the model", 2, "the config says [batch, 3, 16]", "make inputs[].shape match")
def _(bench, here, out):
    config = bench.config(here, inputs=[{"name": "images", "shape": ["batch", 3, HW]}])
    return Run(build(config, out), (str(bench.root / "conv.onnx"),))


@case("input dtype differs from the model", 2, "input 'images' is float32 in the model, the config says uint8",
      "set inputs[].dtype to float32")
def _(bench, here, out):
    config = bench.config(here, inputs=[{"name": "images", "shape": ["batch", 3, HW, HW], "dtype": "uint8"}])
    return Run(build(config, out), (str(bench.root / "conv.onnx"),))


@case("output name not in the model", 2, "the model has no output 'scores' (its outputs: relu)",
      "list the model's output names")
def _(bench, here, out):
    return Run(build(bench.config(here, outputs=["scores"]), out), (str(bench.root / "conv.onnx"),))


@case("kept output not in the model", 2, "output 'scores' is not an output of this model",
      "Choose from the model's outputs")
def _(bench, here, out):
    return Run(build(bench.config(here, optimize={"keep_outputs": ["scores"]}), out), ("optimize keep_outputs",))


for _target in ("onnxruntime", "openvino"):
    @case(f"custom-domain op ({_target})", 1, "is neither an ONNX operator nor one ONNX Runtime implements",
          "replace it with standard ONNX operators")
    def _(bench, here, out, target=_target):
        model = bench.model(here, conv_model(("MyCustomOp", "com.example")))
        return Run(build(bench.config(here, model), out, "--target", target),
                   (str(model), "node 'mycustomop0' (com.example:MyCustomOp)"))


@case("op OpenVINO cannot convert", 1, "OpenVINO has no conversion for node 'inverse0' (com.microsoft:Inverse)",
      "build it with --target onnxruntime")
def _(bench, here, out):
    config = bench.config(here, bench.model(here, inverse_model()), inputs=[{"name": "images",
                                                                              "shape": ["batch", 3, 4, 4]}],
                          validation={"data": str(bench.root / "val4.npz")})
    return Run(build(config, out, "--target", "openvino"), (str(out / "deploy.onnx"),))


@case("NaN in the outputs", 1, "check t1.finite failed on the reference", "NaN", "check its weights")
def _(bench, here, out):
    model = bench.model(here, conv_model(("Neg", ""), ("Sqrt", "")))  # sqrt of a negative
    return Run(build(bench.config(here, model), out), (str(model), "output 't1'"))


@case("Inf in the outputs", 1, "check t2.finite failed on the reference", "Inf", "check its weights")
def _(bench, here, out):
    model = bench.model(here, conv_model(("Neg", ""), ("Relu", ""), ("Log", "")))  # log(0)
    return Run(build(bench.config(here, model), out), (str(model), "output 't2'"))


@case("fp16 out of range", 1, "checks failed: y.rel_l2", "exceeds limit", "the report has every figure",
      completes=True)
def _(bench, here, out):
    model = bench.model(here, scaled_model(300.0))
    return Run(build(bench.config(here, model), out, "--target", "onnxruntime", "--precision", "fp16"),
               (str(out / "report.md"),))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
