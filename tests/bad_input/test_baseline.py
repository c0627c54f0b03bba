"""The bad-input matrix: baseline."""

from __future__ import annotations

import os

import pytest

from bad_input.matrix import Run, baseline_run, matrix_test, registry

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


for _name, _says, _change in (
        ("tensors is a list", "baseline `tensors`: Input should be a valid dictionary",
         lambda r: r.update(tensors=[1, 2])),
        ("rel_l2 is NaN", "baseline `tensors.relu.rel_l2`: Input should be a finite number",
         lambda r: r["tensors"]["relu"].update(rel_l2=float("nan"))),
        ("rel_l2 is a string", "baseline `tensors.relu.rel_l2`: Input should be a valid number",
         lambda r: r["tensors"]["relu"].update(rel_l2="0.1")),
        ("latency is an object", "baseline `latency`: Input should be a valid list", lambda r: r.update(latency={})),
        ("latency without median_ms", "baseline `latency.0.median_ms`: Field required",
         lambda r: r["latency"][0].pop("median_ms")),
        ("latency cov is a string", "baseline `latency.0.cov`: Input should be a valid number",
         lambda r: r["latency"][0].update(cov="low")),
        ("batch is negative", "baseline `latency.0.batch`: Input should be greater than or equal to 1",
         lambda r: r["latency"][0].update(batch=-1)),
        ("task is a string", "baseline `task`: Input should be a valid dictionary", lambda r: r.update(task="x")),
        ("conditions is a list", "baseline `conditions`: Input should be a valid dictionary",
         lambda r: r.update(conditions=[1])),
        ("target unknown", "baseline `target`: Input should be 'openvino', 'onnxruntime' or 'trt'",
         lambda r: r.update(target="tpu"))):
    @case(f"baseline: {_name}", 2, _says, "use a report.json written by edgedeploy", existing=True)
    def _(bench, here, out, change=_change):
        return baseline_run(here, out, change)


@case("baseline nested too deeply", 2, "the baseline report is not readable JSON (nested too deeply)", existing=True)
def _(bench, here, out):
    return baseline_run(here, out, text="[" * 100_000 + "]" * 100_000)


@case("baseline is a FIFO", 2, "the baseline report is a FIFO (named pipe), not a file", existing=True)
def _(bench, here, out):
    os.mkfifo(here / "pipe.json")
    return Run(["validate", str(out), "--baseline", str(here / "pipe.json")], (str(here / "pipe.json"),),
               keep=(here / "out-validate",))


@case("baseline is /dev/zero", 2, "the baseline report is a device, not a file", existing=True)
def _(bench, here, out):
    return Run(["validate", str(out), "--baseline", "/dev/zero"], ("/dev/zero",), keep=(here / "out-validate",))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
