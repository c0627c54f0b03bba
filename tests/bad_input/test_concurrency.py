"""The bad-input matrix: concurrency."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from bad_input.matrix import LATENCY, Run, build, matrix_test, registry, wait_for, wait_for_lock
from edgedeploy import fileio

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


@case("build while a validate reads the folder", 1, "edgedeploy validate (PID", "is reading this folder",
      "wait for it to finish", existing=True)
def _(bench, here, out):
    reader = subprocess.Popen([sys.executable, "-m", "edgedeploy.cli", "validate", str(out)], stderr=subprocess.PIPE)
    wait_for_lock(reader, here / ".out.lock")
    reader.send_signal(signal.SIGSTOP)  # paused mid-validate, its shared lock held, for as long as the build takes

    def reader_unaffected(result):
        reader.send_signal(signal.SIGCONT)
        _, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err
        report = json.loads((here / "out-validate" / "report.json").read_text())
        assert report["passed"] and report["checks"][0]["changed"] == []  # it checked the artifact it read

    return Run(build(bench.config(here), out), (str(out), f"(PID {reader.pid})"), after=reader_unaffected)


@case("validate while a build writes the folder", 1, "(PID", "is writing this folder", "wait for it to finish",
      existing=True)
def _(bench, here, out):
    slow = bench.config(here, name="slow.yaml", validation={"latency": {**LATENCY, "duration_s": 2}})
    writer = subprocess.Popen([sys.executable, "-m", "edgedeploy.cli", *build(slow, out)], stderr=subprocess.PIPE)
    wait_for(writer, "✓ build")
    writer.send_signal(signal.SIGSTOP)

    def writer_unaffected(result):
        writer.send_signal(signal.SIGCONT)
        writer.communicate(timeout=120)
        assert writer.returncode == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert all(fileio.sha256_file(out / rel) == digest for rel, digest in manifest["files"].items())

    return Run(["validate", str(out)], (str(out), f"(PID {writer.pid})"), after=writer_unaffected,
               keep=(here / "out-validate",))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
