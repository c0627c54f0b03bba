"""The bad-input matrix: paths."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from bad_input.matrix import Run, build, matrix_test, planted_links_removed, registry, victim

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


@case("--out is a symbolic link to a build folder", 2, "--out is a symbolic link (to real)",
      "pass the folder it points to")
def _(bench, here, out):
    shutil.copytree(bench.built, here / "real")
    out.symlink_to("real")
    return Run(build(bench.config(here), out), (str(out),), keep=(here / "real",))


@case("--out is a dangling symbolic link", 2, "--out is a dangling symbolic link (to nowhere)")
def _(bench, here, out):
    out.symlink_to("nowhere")
    return Run(build(bench.config(here), out), (str(out),), keep=(here / "nowhere",))


@case("--out under a dangling symbolic link", 2, "--out lies under a dangling symbolic link")
def _(bench, here, out):
    (here / "gone").symlink_to("nowhere")
    return Run(build(bench.config(here), here / "gone" / "out"), (str(here / "gone"),), keep=(here / "nowhere",))


@case("--out is the file system root", 2, "--out is the file system root", "choose a folder of its own")
def _(bench, here, out):
    return Run(build(bench.config(here), Path("/")), ("/",))


@case("--out under a file", 2, "--out lies under a file, not a folder", "choose a path whose parents are folders")
def _(bench, here, out):
    (here / "notes.txt").write_text("keep me")
    return Run(build(bench.config(here), here / "notes.txt" / "out"), (str(here / "notes.txt"),),
               keep=(here / "notes.txt",))


@case("--out name of 250 characters", 2, "the folder name is 250 bytes", "choose a shorter name")
def _(bench, here, out):
    return Run(build(bench.config(here), here / ("n" * 250)), ("n" * 250,), keep=(here / ("n" * 250),))


@case("rich markup in the paths", 2, "config file not found", "check the path")
def _(bench, here, out):
    return Run(build(here / "res[/]ult [red]x[/red].yaml", out), (str(here / "res[/]ult [red]x[/red].yaml"),))


@case("config `name: ../../x` (default output folder outside edgedeploy-out)", 2, "`name`:",
      "must be one folder name")
def _(bench, here, out):
    (here / "a" / "b").mkdir(parents=True)
    config = bench.config(here / "a" / "b", name="c.yaml")
    data = yaml.safe_load(config.read_text()) | {"name": "../../x"}
    config.write_text(yaml.safe_dump(data))
    return Run(["build", str(config), "--target", "onnxruntime"], (str(config),), {"cwd": here / "a" / "b"},
               keep=(here / "a" / "x-onnxruntime-fp32", here / "x-onnxruntime-fp32"))


@case("config `name` with a NUL", 2, "`name`:", "must be one folder name")
def _(bench, here, out):
    config = bench.config(here)
    config.write_text(config.read_text().replace("name: tiny", 'name: "a\\0b"'))
    return Run(build(config, out), (str(config),))


@case("lock file planted as a symbolic link", 1, "the lock file is a symbolic link; refused",
      "remove the link", existing=True)
def _(bench, here, out):
    (here / ".out.lock").symlink_to(victim(here))
    return Run(build(bench.config(here), out), (str(here / ".out.lock"),), keep=(here / "victim.txt",))


@case("lock file planted as a hard link", 1, "the lock file is a file with other hard links", existing=True)
def _(bench, here, out):
    os.link(victim(here), here / ".out.lock")
    return Run(build(bench.config(here), out), (str(here / ".out.lock"),), keep=(here / "victim.txt",))


@case("lock file planted as a folder", 1, "the lock file is a folder", existing=True)
def _(bench, here, out):
    (here / ".out.lock").mkdir()
    return Run(build(bench.config(here), out), (str(here / ".out.lock"),))


@case("lock file planted as a FIFO", 1, "the lock file is a FIFO (named pipe)", existing=True)
def _(bench, here, out):
    os.mkfifo(here / ".out.lock")
    return Run(build(bench.config(here), out), (str(here / ".out.lock"),))


for _folder in ("staging", "old"):
    @case(f"{_folder} folder planted as a symbolic link (handled: the link removed, not followed)", 0)
    def _(bench, here, out, planted=f".out.{_folder}"):
        (here / "mine").mkdir()
        (here / "mine" / "thesis.tex").write_text("months of work")
        (here / planted).symlink_to(here / "mine")
        return Run(build(bench.config(here), out), keep=(here / "mine",),
                   handled=planted_links_removed(out, here / "mine", here / planted))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
