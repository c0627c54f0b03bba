"""The bad-input matrix: config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bad_input.matrix import LATENCY, Run, build, matrix_test, registry

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


@case("config file missing", 2, "config file not found", "check the path")
def _(bench, here, out):
    return Run(build(here / "missing.yaml", out), (str(here / "missing.yaml"),))


@case("invalid YAML (tab)", 2, "invalid YAML", "fix the syntax")
def _(bench, here, out):
    (here / "c.yaml").write_text("name: tiny\nmodel:\n\tonnx: conv.onnx\n")
    return Run(build(here / "c.yaml", out), (f"{here / 'c.yaml'}:3:",))


@case("invalid YAML (unclosed bracket)", 2, "invalid YAML", "fix the syntax")
def _(bench, here, out):
    (here / "c.yaml").write_text("name: tiny\ninputs: [{name: images, shape: [batch, 3]}\noutputs: [y]\n")
    return Run(build(here / "c.yaml", out), (f"{here / 'c.yaml'}:",))


@case("unknown key", 2, "unknown key `surprise`", "see the config reference")
def _(bench, here, out):
    return Run(build(bench.config(here, surprise=1), out), (str(here / "config.yaml"),))


@case("invalid --target", 2, "invalid --target 'tpu'", "use one of")
def _(bench, here, out):
    return Run(build(bench.config(here), out, "--target", "tpu"), ("--target",))


@case("invalid --precision", 2, "invalid --precision 'fp8'", "use one of")
def _(bench, here, out):
    return Run(build(bench.config(here), out, "--precision", "fp8"), ("--precision",))


@case("validation data missing", 2, "validation.data not found", "check validation.data")
def _(bench, here, out):
    return Run(build(bench.config(here, validation={"data": str(here / "val.npz")}), out), (str(here / "val.npz"),))


@case("TensorRT missing", 1, "TensorRT is not installed", "pip install")
def _(bench, here, out):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here, so the missing-SDK path cannot be exercised")
    except (ImportError, OSError):
        pass
    return Run(build(bench.config(here), out, "--target", "trt"), ("TensorRT",))


@case("config is a FIFO", 2, "the config file is a FIFO (named pipe), not a file")
def _(bench, here, out):
    os.mkfifo(here / "c.yaml")
    return Run(build(here / "c.yaml", out), (str(here / "c.yaml"),))


@case("config is /dev/zero", 2, "the config file is a device, not a file")
def _(bench, here, out):
    return Run(build(Path("/dev/zero"), out), ("/dev/zero",))


@case("config is a folder", 2, "the config file is a folder, not a file")
def _(bench, here, out):
    return Run(build(here, out), (str(here),))


@case("validate --config is /dev/zero", 2, "the config file is a device, not a file", existing=True)
def _(bench, here, out):
    return Run(["validate", str(out), "--config", "/dev/zero"], ("/dev/zero",), keep=(here / "out-validate",))


@case("latency batch size negative (ran as batch 6)", 2, "`validation.latency.batch_sizes.0`",
      "greater than or equal to 1")
def _(bench, here, out):
    return Run(build(bench.config(here, validation={"latency": {**LATENCY, "batch_sizes": [-2]}}), out),
               (str(here / "config.yaml"),))


@case("latency batch size 0", 2, "`validation.latency.batch_sizes.1`", "greater than or equal to 1")
def _(bench, here, out):
    return Run(build(bench.config(here, validation={"latency": {**LATENCY, "batch_sizes": [1, 0]}}), out),
               (str(here / "config.yaml"),))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
