"""The bad-input matrix: calibration data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bad_input.matrix import Run, huge_header, int8_run, matrix_test, png_header, registry

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


@case("calibration npy with an object array", 2, "the calibration data holds Python objects", "never read")
def _(bench, here, out):
    np.save(here / "c.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    return Run(int8_run(bench, here, out, here / "c.npy"), (str(here / "c.npy"),))


@case("calibration npy with a 0-d array", 2, "the calibration data is a 0-d scalar")
def _(bench, here, out):
    np.save(here / "c.npy", np.array(1.0, np.float32))
    return Run(int8_run(bench, here, out, here / "c.npy"), (str(here / "c.npy"),))


@case("calibration npy truncated", 2, "the calibration data is corrupt or truncated")
def _(bench, here, out):
    data = (bench.root / "calib0.npy").read_bytes()
    (here / "c.npy").write_bytes(data[: len(data) // 2])
    return Run(int8_run(bench, here, out, here / "c.npy"), (str(here / "c.npy"),))


@case("calibration npy of 0 bytes", 2, "the calibration data is empty (0 bytes)")
def _(bench, here, out):
    (here / "c.npy").write_bytes(b"")
    return Run(int8_run(bench, here, out, here / "c.npy"), (str(here / "c.npy"),))


@case("calibration npy promising terabytes", 2, "GiB of arrays, more than half this machine's memory",
      "refused before reading")
def _(bench, here, out):
    (here / "c.npy").write_bytes(huge_header((100000, 100000, 100)))
    return Run(int8_run(bench, here, out, here / "c.npy"), (str(here / "c.npy"),))


@case("calibration data is /dev/null", 2, "calibration data is a device, not a file or a folder")
def _(bench, here, out):
    return Run(int8_run(bench, here, out, Path("/dev/null")), ("/dev/null",))


@case("calibration image over the pixel budget", 2, "calibration image is 8000x8000 (64 megapixels)",
      "more than the 50 megapixels", "downscale it")
def _(bench, here, out):
    (here / "calib").mkdir()
    (here / "calib" / "big.png").write_bytes(png_header(8000, 8000))
    return Run(int8_run(bench, here, out, here / "calib"), (str(here / "calib" / "big.png"),))


@case("calibration image decompression bomb", 2, "calibration image is more than the 50 megapixels",
      "decompression bomb")
def _(bench, here, out):
    (here / "calib").mkdir()
    (here / "calib" / "bomb.png").write_bytes(png_header(100_000, 100_000))
    return Run(int8_run(bench, here, out, here / "calib"), (str(here / "calib" / "bomb.png"),))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
