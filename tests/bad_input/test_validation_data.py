"""The bad-input matrix: validation data."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from bad_input.matrix import HW, huge_header, images, matrix_test, registry, validation_run, zip_member_flipped

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


@case("validation npz with an object array", 2, "array 'images' holds Python objects", "never read")
def _(bench, here, out):
    return validation_run(bench, here, out, here / "v.npz", images=np.array([{"x": 1}], dtype=object))


@case("validation npz with a 0-d array", 2, "array 'images' is a 0-d scalar")
def _(bench, here, out):
    return validation_run(bench, here, out, here / "v.npz", images=np.array(3.0))


@case("validation npz with a corrupt member", 2, "array 'images' is corrupt or truncated", "Bad CRC-32")
def _(bench, here, out):
    zip_member_flipped(here / "v.npz", bench.root / "val.npz")
    return validation_run(bench, here, out, here / "v.npz")


@case("validation npz truncated", 2, "the validation data is not a readable .npz file")
def _(bench, here, out):
    data = (bench.root / "val.npz").read_bytes()
    (here / "v.npz").write_bytes(data[: len(data) // 2])
    return validation_run(bench, here, out, here / "v.npz")


@case("validation npz of 0 bytes", 2, "the validation data is empty (0 bytes)")
def _(bench, here, out):
    (here / "v.npz").write_bytes(b"")
    return validation_run(bench, here, out, here / "v.npz")


@case("validation data is /dev/null", 2, "validation.data is a device, not a file")
def _(bench, here, out):
    return validation_run(bench, here, out, Path("/dev/null"))


@case("validation data is a FIFO", 2, "validation.data is a FIFO (named pipe), not a file")
def _(bench, here, out):
    os.mkfifo(here / "v.npz")
    return validation_run(bench, here, out, here / "v.npz")


@case("validation npz promising terabytes", 2, "is truncated: its header promises 4000000000000 bytes")
def _(bench, here, out):
    import zipfile
    with zipfile.ZipFile(here / "v.npz", "w") as z:
        z.writestr("images.npy", huge_header((100000, 100000, 100)))
    return validation_run(bench, here, out, here / "v.npz")


@case("validation npz with a member that is not an array", 2, "holds 'notes.txt', which is not a NumPy array")
def _(bench, here, out):
    import zipfile
    shutil.copy(bench.root / "val.npz", here / "v.npz")
    with zipfile.ZipFile(here / "v.npz", "a") as z:
        z.writestr("notes.txt", "hello")
    return validation_run(bench, here, out, here / "v.npz")


@case("validation npz with strings", 2, "array 'images' has dtype <U5", "only bool, integer and floating-point")
def _(bench, here, out):
    return validation_run(bench, here, out, here / "v.npz", images=np.array(["hello"] * 8))


@case("validation npz holding a pickle", 2, "the validation data is not an .npz", "does not start like one")
def _(bench, here, out):
    (here / "v.npz").write_bytes(pickle.dumps({"images": [1, 2, 3]}))
    return validation_run(bench, here, out, here / "v.npz")


@case("validation images as floats (would be scaled by 1/255 twice)", 2,
      "`images` must be uint8 (N, H, W, 3), got float32", "float arrays are not raw images")
def _(bench, here, out):
    return validation_run(bench, here, out, here / "v.npz", images=images(8, HW).astype(np.float32) / 255)


@case("validation npz with no samples", 2, "the inputs hold different or no sample counts")
def _(bench, here, out):
    return validation_run(bench, here, out, here / "v.npz", images=images(8, HW)[:0])


@case("detection targets not (M, 6)", 2, "`targets` must be (M, 6) numbers", "fix the detection labels")
def _(bench, here, out):
    return validation_run(bench, here, out, here / "v.npz", task="detection", images=images(8, HW), targets=np.zeros(5))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
