"""The bad-input matrix: reference."""

from __future__ import annotations

import numpy as np
import pytest

from bad_input.matrix import Run, matrix_test, reference_run, registry, zip_member_flipped

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


@case("reference.npz with an object array", 2, "array 'input.images' holds Python objects",
      "changed since the build", existing=True)
def _(bench, here, out):
    return reference_run(out, **{"input.images": np.array([{"x": 1}], dtype=object)})


@case("reference.npz with a 0-d array", 2, "array 'output.relu' is a 0-d scalar", existing=True)
def _(bench, here, out):
    return reference_run(out, **{"output.relu": np.array(1.0, np.float32)})


@case("reference.npz with inputs and outputs of different counts", 2, "different or no sample counts",
      existing=True)
def _(bench, here, out):
    with np.load(out / "reference.npz") as data:
        return reference_run(out, **{"input.images": data["input.images"][:3]})


@case("reference.npz input of the wrong dtype", 2, "input 'images' has dtype float64, the config says float32",
      "changed since the build", existing=True)
def _(bench, here, out):
    with np.load(out / "reference.npz") as data:
        return reference_run(out, **{"input.images": data["input.images"].astype(np.float64)})


@case("reference.npz with a corrupt member", 2, "is corrupt or truncated", "Bad CRC-32", existing=True)
def _(bench, here, out):
    zip_member_flipped(out / "reference.npz", bench.built / "reference.npz")
    return Run(["validate", str(out)], (str(out / "reference.npz"),), keep=(here / "out-validate",))


@case("reference.npz of 0 bytes", 2, "the reference.npz is empty (0 bytes)", existing=True)
def _(bench, here, out):
    (out / "reference.npz").write_bytes(b"")
    return Run(["validate", str(out)], (str(out / "reference.npz"),), keep=(here / "out-validate",))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
