"""The bad-input matrix: the stage cache. An entry someone else wrote (a poisoned export rehashed, a cache others can
write) is never reused; a cache that cannot be written is skipped with a warning; `cache clear` removes only real
entries and never follows a link; `cache ls` reads key.json through its typed model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bad_input.matrix import Run, build, conv_model, environment, matrix_test, registry
from edgedeploy import fileio

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


def cached(bench, here: Path) -> tuple[dict[str, str], Path]:
    """A private cache (XDG_CACHE_HOME) holding the conv model's export and optimize entries; (env, cache root)."""
    env = {"XDG_CACHE_HOME": str(here / "xdg")}
    with environment(env):
        bench.build(bench.config(here, name="first.yaml"), here / "first")
    return env, here / "xdg" / "edgedeploy"


def entry(root: Path, stage: str = "export") -> Path:
    return next(p for p in (root / "stages" / stage).iterdir() if p.is_dir())


def stage_cache(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())["stage_cache"]


@case("poisoned export entry (raw.onnx and reference.npz replaced, key.json rehashed)", 0)
def _(bench, here, out):
    env, root = cached(bench, here)
    folder = entry(root)
    model = onnx.load(str(folder / "raw.onnx"))
    weight = model.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(3 * numpy_helper.to_array(weight), weight.name))
    onnx.save(model, str(folder / "raw.onnx"))
    arrays = dict(np.load(folder / "reference.npz"))
    outputs = [k for k in arrays if not k.startswith("input")] or list(arrays)
    np.savez(folder / "reference.npz", **{k: (3 * v if k in outputs and v.dtype.kind == "f" else v)
                                          for k, v in arrays.items()})
    record = json.loads((folder / "key.json").read_text())
    for name in ("raw.onnx", "reference.npz"):
        record["files"][name] = {"size": (folder / name).stat().st_size, "sha256": fileio.sha256_file(folder / name)}
    (folder / "key.json").write_text(json.dumps(record))

    def handled() -> str:
        export = stage_cache(out)["export"]
        assert export["status"] == "refused" and "seal" in export["note"], export
        assert (out / "raw.onnx").read_bytes() == (here / "first" / "raw.onnx").read_bytes()
        return f"export {export['status']}: {export['note']}"
    return Run(build(bench.config(here), out), env=env, handled=handled)


@case("world-writable cache root (0777)", 0)
def _(bench, here, out):
    env, root = cached(bench, here)
    root.chmod(0o777)

    def seen(result) -> str:
        export = stage_cache(out)["export"]
        assert export["status"] == "off" and "writable by others" in export["note"], export
        assert f"warning: stage cache skipped: {root} is writable by others" in result.stderr, result.stderr
        assert "chmod go-w" in result.stderr
        return f"export {export['status']}: {export['note']}"
    return Run(build(bench.config(here), out), env=env, seen=seen)


@case("world-writable cache entry (0777)", 0)
def _(bench, here, out):
    env, root = cached(bench, here)
    folder = entry(root)
    folder.chmod(0o777)

    def handled() -> str:
        export = stage_cache(out)["export"]
        assert export["status"] == "refused" and "writable by others" in export["note"], export
        return f"export {export['status']}: {export['note']}"
    return Run(build(bench.config(here), out), env=env, handled=handled)


def skipped_with_warning(out: Path, says: str):
    def seen(result) -> str:
        export = stage_cache(out)["export"]
        assert export["status"] == "off" and says in export["note"], export
        assert "warning: stage cache skipped:" in result.stderr, result.stderr
        return f"export {export['status']}: {export['note']}"
    return seen


@case("XDG_CACHE_HOME is a file", 0)
def _(bench, here, out):
    (here / "xdg").write_text("not a folder")
    return Run(build(bench.config(here), out), env={"XDG_CACHE_HOME": str(here / "xdg")},
               seen=skipped_with_warning(out, "cannot be made (Not a directory)"))


@case("HOME is a file (XDG_CACHE_HOME unset)", 0)
def _(bench, here, out):
    (here / "home").write_text("not a folder")
    return Run(build(bench.config(here), out), env={"XDG_CACHE_HOME": None, "HOME": str(here / "home")},
               seen=skipped_with_warning(out, "cannot be made (Not a directory)"))


@case("cache on a read-only file system", 0)
def _(bench, here, out):
    """A read-only tmpfs where this test may mount one (root); else a folder it may not write (the same refusal)."""
    ro = here / "ro"
    ro.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                                                   capture_output=True).returncode == 0
    if not mounted:
        ro.chmod(0o555)

    def unmount(result) -> None:
        if mounted:
            subprocess.run(["umount", str(ro)], check=True)
    return Run(build(bench.config(here), out), env={"XDG_CACHE_HOME": str(ro)}, after=unmount,
               seen=skipped_with_warning(out, "cannot be made ("))


@case("cache clear through a symlinked cache root", 1, "is a symbolic link", "never follows a link",
      "set XDG_CACHE_HOME to the real folder")
def _(bench, here, out):
    victim = here / "victim"
    (victim / "stages" / "export").mkdir(parents=True)
    (victim / "stages" / "export" / "thesis.tex").write_text("not a cache entry")
    (here / "xdg").mkdir()
    (here / "xdg" / "edgedeploy").symlink_to(victim)
    return Run(["cache", "clear"], env={"XDG_CACHE_HOME": str(here / "xdg")}, keep=(victim,))


@case("cache clear with stages/export a symbolic link", 1, "is a symbolic link", "never follows a link")
def _(bench, here, out):
    env, root = cached(bench, here)
    victim = here / "victim"
    victim.mkdir()
    (victim / "0123456789abcdef").mkdir()
    (victim / "0123456789abcdef" / "key.json").write_text("{}")
    (root / "stages" / "export").rename(here / "moved")
    (root / "stages" / "export").symlink_to(victim)
    return Run(["cache", "clear"], env=env, keep=(victim, root / "stages" / "optimize"))


@case("cache clear counts only what it removed (a foreign folder stays)", 0)
def _(bench, here, out):
    env, root = cached(bench, here)
    (root / "stages" / "export" / "notes").mkdir()

    def seen(result) -> str:
        assert "removed 2 entries" in result.stdout, result.stdout
        assert (root / "stages" / "export" / "notes").is_dir()
        assert not [p for p in (root / "stages" / "export").iterdir() if p.name != "notes"]
        return result.stdout.strip()
    return Run(["cache", "clear"], env=env, seen=seen)


@case("cache ls with a key.json whose size is a string", 0)
def _(bench, here, out):
    env, root = cached(bench, here)
    key_file = entry(root) / "key.json"
    record = json.loads(key_file.read_text())
    record["files"]["raw.onnx"]["size"] = "big"
    key_file.write_text(json.dumps(record))

    def seen(result) -> str:
        line = next(line for line in result.stdout.splitlines() if line.startswith("export"))
        assert "unreadable cache key file: `files.raw.onnx.size`" in line and str(key_file) in line, result.stdout
        return line.split("  ")[-1]
    return Run(["cache", "ls"], env=env, seen=seen)


@case("stage cache entry beside it with a key.json 200 000 levels deep", 0)
def _(bench, here, out):
    env, root = cached(bench, here)
    planted = root / "stages" / "export" / "0123456789abcdef"
    planted.mkdir()
    (planted / "key.json").write_text("[" * 200_000 + "]" * 200_000)

    other = bench.model(here, conv_model(("Sigmoid", "")), "other.onnx")  # a miss: every entry is compared with it

    def handled() -> str:
        export = stage_cache(out)["export"]
        assert export["status"] == "rebuilt", export
        return f"export {export['status']}: {export['note']} (the planted key.json passed over)"
    return Run(build(bench.config(here, other), out), env=env, handled=handled)


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
