"""The bad-input matrix: calibration."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from bad_input.matrix import HW, Run, cache_handled, images, int8_run, matrix_test, registry

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


@case("calibration set empty", 2, "calibration set is empty", "point calibration.data at")
def _(bench, here, out):
    (here / "calib").mkdir()
    return Run(int8_run(bench, here, out, here / "calib"), (str(here / "calib"),))


@case("calibration image corrupt", 2, "unreadable or corrupt calibration image", "replace or delete the file")
def _(bench, here, out):
    (here / "calib").mkdir()
    Image.fromarray(images(1, HW)[0]).save(here / "calib" / "a.png")
    (here / "calib" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return Run(int8_run(bench, here, out, here / "calib"), (str(here / "calib" / "b.png"),))


@case("calibration samples of the wrong shape", 2, "tensor 'images' has shape [3, 8, 8] per sample",
      f"expected [batch, 3, {HW}, {HW}]", "fix the calibration data")
def _(bench, here, out):
    np.save(here / "wrong.npy", np.zeros((4, 3, 8, 8), np.float32))
    return Run(int8_run(bench, here, out, here / "wrong.npy"), ("wrong.npy[0]",))


@case("stale calibration cache (handled: rebuilt, reported)", 0)
def _(bench, here, out):
    shutil.copytree(bench.int8, out)
    return Run(int8_run(bench, here, out, bench.root / "calib1.npy"),
               handled=cache_handled(out, "rebuilt", "data_sha256 changed"))


@case("corrupt calibration cache entry (handled: refused, rebuilt)", 0)
def _(bench, here, out):
    shutil.copytree(bench.int8, out)
    for key_file in out.glob("cache/*/*/key.json"):
        key_file.write_text("{ not json")
    return Run(int8_run(bench, here, out, bench.root / "calib0.npy"), handled=cache_handled(out, "refused", "key file"))


@case("cached calibration result bit-flipped (handled: refused by content hash, rebuilt)", 0)
def _(bench, here, out):
    shutil.copytree(bench.int8, out)
    (cached,) = out.glob("cache/*/*/model.qdq.onnx")
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    return Run(int8_run(bench, here, out, bench.root / "calib0.npy"),
               handled=cache_handled(out, "refused", "model.qdq.onnx: content hash mismatch"))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
