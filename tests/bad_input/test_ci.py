"""The bad-input matrix: `ci github`. A bad --device or --precision is one usage line and no workflow file is written.
(What reaches the workflow's `run:` steps, and expressions in inputs, are the fleet workflow's own cases.)"""

from __future__ import annotations

import pytest

from bad_input.matrix import Run, matrix_test, registry

pytestmark = pytest.mark.slow  # each case runs the CLI

CASES: list = []
case = registry(CASES)


def ci(here, *args: str) -> list[str]:
    return ["ci", "github", *args, "--out", str(here / "wf.yml")]


@case("ci: --device without labels", 2, "cannot read --device 'orin-nano:self-hosted'",
      "NAME=LABEL,LABEL[:TARGET[:CUDA_MAJOR]]")
def _(bench, here, out):
    return Run(ci(here, "--device", "orin-nano:self-hosted"), keep=(here / "wf.yml",))


@case("ci: --device with an unknown target", 2, "unknown target 'tpu'", "use one of")
def _(bench, here, out):
    return Run(ci(here, "--device", "orin=self-hosted,jetson:tpu"), keep=(here / "wf.yml",))


@case("ci: --precision fp8", 2, "invalid --precision 'fp8'", "use one of")
def _(bench, here, out):
    return Run(ci(here, "--device", "orin=self-hosted,jetson:trt", "-p", "fp8"), keep=(here / "wf.yml",))


@case("ci: two devices of one name", 2, "device names repeat", "give each --device its own NAME")
def _(bench, here, out):
    return Run(ci(here, "--device", "orin=self-hosted,a:trt", "--device", "orin=self-hosted,b:trt"),
               keep=(here / "wf.yml",))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
