"""The bad-input matrix: output folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from bad_input.matrix import LATENCY, Run, build, drop_dac_override, file_size_limit, matrix_test, registry, wait_for
from cli_helpers import run_cli
from edgedeploy import fileio

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


@case("--out is an existing file", 2, "the output path is a file, not a folder", "choose a folder for --out")
def _(bench, here, out):
    out.write_text("notes")
    return Run(build(bench.config(here), out), (str(out),))


@case("--out is a folder edgedeploy did not write", 2, "holds files but no edgedeploy-build.json",
      "choose a new or empty folder")
def _(bench, here, out):
    out.mkdir()
    (out / "thesis.tex").write_text("months of work")
    return Run(build(bench.config(here), out), (str(out),))


@case("output folder not writable", 1, "the folder is not writable (permission denied)", "make it writable",
      existing=True)
def _(bench, here, out):
    popen = {}
    out.chmod(0o555)
    if os.geteuid() == 0:
        probe = subprocess.run([sys.executable, "-c", f"open({str(out / 'probe')!r}, 'w')"], capture_output=True,
                               preexec_fn=drop_dac_override)  # noqa: PLW1509
        if probe.returncode == 0:
            out.chmod(0o755)
            (out / "probe").unlink()
            pytest.skip("running as root, permissions do not apply (CAP_DAC_OVERRIDE cannot be dropped here)")
        popen = {"preexec_fn": drop_dac_override}
    return Run(build(bench.config(here), out), (str(out),), popen, after=lambda result: out.chmod(0o755))


@case("disk full (file size limit)", 1, "cannot write: file too large", "nothing was replaced", existing=True)
def _(bench, here, out):
    path, limit = file_size_limit(out)
    return Run(build(bench.config(here), out), (str(path),), {"preexec_fn": limit})  # noqa: PLW1509


@case("disk full during validate", 1, "cannot write: file too large", "nothing was replaced", existing=True)
def _(bench, here, out):
    first = run_cli("validate", str(out))  # its report folder, out-validate, must survive the second run
    assert first.returncode == 0, first.stderr
    path, limit = file_size_limit(here / "out-validate")
    return Run(["validate", str(out)], (str(path),), {"preexec_fn": limit},  # noqa: PLW1509
               keep=(here / "out-validate",))


@case("two builds into one folder at once", 1, "is writing this folder", "wait for it to finish", existing=True)
def _(bench, here, out):
    slow = bench.config(here, name="slow.yaml", validation={"latency": {**LATENCY, "duration_s": 2}})
    first = subprocess.Popen([sys.executable, "-m", "edgedeploy.cli", *build(slow, out)], stderr=subprocess.PIPE)
    wait_for(first, "✓ build")  # holding the lock; its validate stage takes 2 s
    first.send_signal(signal.SIGSTOP)  # paused mid-build for as long as the second one takes

    def first_unaffected(result):
        first.send_signal(signal.SIGCONT)
        first.communicate(timeout=120)
        assert first.returncode == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["spec"]["validation"]["latency"]["duration_s"] == 2  # the first build's folder
        assert all(fileio.sha256_file(out / rel) == digest for rel, digest in manifest["files"].items())

    return Run(build(bench.config(here), out), (str(out), f"(PID {first.pid})"), after=first_unaffected)


@case("validate --out is the build folder itself", 2, "--out is the build folder it reports on",
      "leave --out out", existing=True)
def _(bench, here, out):
    return Run(["validate", str(out), "--out", str(out)], (str(out),))


@case("validate --out is another build's folder", 2, "--out is a build folder; the report would replace the build",
      "choose another --out", existing=True)
def _(bench, here, out):
    shutil.copytree(bench.built, here / "other")
    return Run(["validate", str(here / "other"), "--out", str(out)], (str(out),), keep=(here / "other",))


@case("validate --out inside the build folder", 2, "--out lies inside the build folder it reports on",
      "leave --out out", existing=True)
def _(bench, here, out):
    return Run(["validate", str(out), "--out", str(out / "reports")], (str(out / "reports"),))


@case("validate --out holds the build folder", 2, "--out holds the build folder it reports on", existing=True)
def _(bench, here, out):
    return Run(["validate", str(out), "--out", str(here)], (str(here),))


@case("debug precision --out is the build folder", 2, "--out is the build folder it reports on", existing=True)
def _(bench, here, out):
    return Run(["debug", "precision", str(out), "--out", str(out)], (str(out),))


@case("--junit names the build's manifest.json", 2, "--junit lies inside a build folder",
      "write it outside that folder", existing=True)
def _(bench, here, out):
    return Run(["validate", str(out), "--junit", str(out / "manifest.json")], (str(out / "manifest.json"),),
               keep=(here / "out-validate",))


@case("--junit is a folder", 2, "--junit is a folder, not a file", "give --junit a file path", existing=True)
def _(bench, here, out):
    (here / "junit").mkdir()
    return Run(["validate", str(out), "--junit", str(here / "junit")], (str(here / "junit"),),
               keep=(here / "out-validate",))


@case("--junit is a FIFO", 2, "--junit is a FIFO (named pipe), not a file", existing=True)
def _(bench, here, out):
    os.mkfifo(here / "pipe")
    return Run(["validate", str(out), "--junit", str(here / "pipe")], (str(here / "pipe"),),
               keep=(here / "out-validate",))


@case("validate --out is a symbolic link", 2, "--out is a symbolic link (to elsewhere)", existing=True)
def _(bench, here, out):
    (here / "elsewhere").mkdir()
    (here / "reports").symlink_to("elsewhere")
    return Run(["validate", str(out), "--out", str(here / "reports")], (str(here / "reports"),),
               keep=(here / "elsewhere",))


@case("debug precision --rebuild inside the build folder", 2, "--rebuild lies inside a build folder", existing=True)
def _(bench, here, out):
    return Run(["debug", "precision", str(out), "--search", "--rebuild", str(out / "again")], (str(out / "again"),),
               keep=(here / "out-debug-precision",))


@case("--junit is a symbolic link", 2, "--junit is a symbolic link (to notes.txt)", existing=True)
def _(bench, here, out):
    (here / "notes.txt").write_text("keep me")
    (here / "junit.xml").symlink_to("notes.txt")
    return Run(["validate", str(out), "--junit", str(here / "junit.xml")], (str(here / "junit.xml"),),
               keep=(here / "notes.txt", here / "out-validate"))


@case("validate a file instead of a build folder", 2, "the artifact folder is a file, not a folder", existing=True)
def _(bench, here, out):
    return Run(["validate", str(out / "manifest.json")], (str(out / "manifest.json"),),
               keep=(here / "out-validate",))


@case("optimize a FIFO", 2, "the ONNX model is a FIFO (named pipe), not a file")
def _(bench, here, out):
    os.mkfifo(here / "model.onnx")
    return Run(["optimize", str(here / "model.onnx"), "--output", str(out)], (str(here / "model.onnx"),))


@case("optimize --output is a folder", 2, "--output is a folder, not a file", "give --output a file path")
def _(bench, here, out):
    out.mkdir()
    return Run(["optimize", str(bench.root / "conv.onnx"), "--output", str(out)], (str(out),))


@case("build --out is a report folder", 2, "--out is a report folder", "a build would replace the reports")
def _(bench, here, out):
    shutil.copytree(bench.built, here / "built")
    made = run_cli("validate", str(here / "built"), "--out", str(out))
    assert made.returncode == 0, made.stderr
    return Run(build(bench.config(here), out), (str(out),))


@case("build --out inside a build folder", 2, "--out lies inside a build folder", "choose a --out outside it",
      existing=True)
def _(bench, here, out):
    return Run(build(bench.config(here), out / "inner"), (str(out / "inner"),))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
