"""The output folder transaction (staging, swap, lock, reused caches) and one-line write errors, in process."""

from __future__ import annotations

import errno
import os

import onnx
import pytest
from onnx import TensorProto, helper

from edgedeploy import cli, fileio
from edgedeploy.errors import EdgeDeployError
from edgedeploy.onnx_checks import check_operators
from edgedeploy.outfolder import BUILD_MARKER, OutputFolder


def finished(folder, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_text(text)
    (folder / BUILD_MARKER).write_text("{}")


def test_a_failed_write_leaves_the_previous_folder_and_no_staging(tmp_path):
    out = tmp_path / "out"
    finished(out, "old")
    with pytest.raises(EdgeDeployError, match="model.onnx: cannot write: no space left") as info:
        with OutputFolder(out) as folder:
            fileio.write_text(folder.staging / BUILD_MARKER, "{}")
            with fileio.atomic_open(folder.staging / "model.onnx") as f:
                f.write(b"half")
                raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.where == str(out / "model.onnx")  # the file the user knows, not the staging copy
    assert (out / "model.onnx").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]
    with OutputFolder(out) as folder:  # the lock was released
        finished(folder.staging / "sub", "new")
        folder.commit()
    assert (out / "sub" / "model.onnx").read_text() == "new" and not (out / "model.onnx").exists()


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    with OutputFolder(tmp_path / "out"):
        with pytest.raises(EdgeDeployError, match=rf"\(PID {os.getpid()}\) is writing this folder") as info:
            OutputFolder(tmp_path / "out").__enter__()
    assert info.value.where == str(tmp_path / "out")


def test_a_killed_writers_leftovers_are_cleared_and_a_killed_swap_undone(tmp_path):
    out = tmp_path / "out"
    finished(tmp_path / ".out.old", "previous")  # killed between the two renames of the swap
    finished(tmp_path / ".out.staging", "half-written")
    with OutputFolder(out) as folder:
        assert list(folder.staging.iterdir()) == []
    assert (out / "model.onnx").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_kept_results_are_linked_in_and_survive_the_swap(tmp_path):
    out = tmp_path / "out"
    finished(out, "old")
    (out / "cache" / "k1").mkdir(parents=True)
    (out / "cache" / "k1" / "key.json").write_text("k1")
    with OutputFolder(out, keep=["cache", "trt/int8.cache"]) as folder:
        staged = folder.staging / "cache" / "k1" / "key.json"
        assert staged.read_text() == "k1" and staged.stat().st_ino == (out / "cache/k1/key.json").stat().st_ino
        fileio.write_text(staged, "rewritten")  # files are replaced, never written in place
        assert (out / "cache" / "k1" / "key.json").read_text() == "k1"
        finished(folder.staging, "new")
        assert folder.relocate({"dir": [str(staged)]}) == {"dir": [str(out / "cache" / "k1" / "key.json")]}
        folder.commit()
    assert (out / "cache" / "k1" / "key.json").read_text() == "rewritten"


def test_a_folder_edgedeploy_did_not_write_is_never_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(EdgeDeployError, match="holds files but no edgedeploy-build.json") as info:
        OutputFolder(tmp_path / "mine").__enter__()
    assert info.value.exit_code == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_an_os_error_outside_fileio_is_still_one_line(monkeypatch, capsys):
    def full_disk():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/.out.old")

    monkeypatch.setattr(cli, "app", full_disk)
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: /data/out/.out.old: cannot write: no space left on the device. free space on that "
                     "disk, or write to another folder; nothing was replaced"]


def test_without_onnx_runtimes_kernel_list_only_unknown_onnx_ops_are_refused(tmp_path):
    def model(op: str, domain: str) -> onnx.ModelProto:
        graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], name="n0", domain=domain)], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.x", 1)])

    check_operators(model("Relu", ""), tmp_path / "m.onnx", None)
    check_operators(model("Custom", "com.x"), tmp_path / "m.onnx", None)  # left to ONNX Runtime itself
    with pytest.raises(EdgeDeployError, match=r"node 'n0' \(Gelu\) is neither"):  # Gelu is opset 20
        check_operators(model("Gelu", ""), tmp_path / "m.onnx", None)
    with pytest.raises(EdgeDeployError, match=r"node 'n0' \(com.x:Custom\)"):
        check_operators(model("Custom", "com.x"), tmp_path / "m.onnx", {("", "Relu")})


def test_a_build_carries_the_caches_inside_its_folder_and_leaves_the_others(tmp_path):
    from edgedeploy.config import BuildSpec
    from edgedeploy.pipeline import reused_results

    def spec(**calibration) -> BuildSpec:
        return BuildSpec.model_validate({"model": {"onnx": "m.onnx"}, "inputs": [{"name": "x", "shape": [1]}],
                                         "calibration": calibration})

    folder = OutputFolder(tmp_path / "out")
    staged, kept = reused_results(spec(), folder)
    assert staged.calibration.cache_dir is None and kept == ["cache", "trt/int8-entropy2.cache",
                                                              "trt/int8-entropy2.cache.json"]
    staged, kept = reused_results(spec(cache_dir=str(tmp_path / "out" / "calib")), folder)
    assert staged.calibration.cache_dir == folder.staging / "calib" and kept[0] == "calib"
    staged, kept = reused_results(spec(cache_dir=str(tmp_path / "shared")), folder)
    assert staged.calibration.cache_dir == tmp_path / "shared" and "shared" not in kept


def test_validate_shares_the_lock_and_a_build_is_refused_naming_the_reader(tmp_path):
    from edgedeploy.outfolder import FolderLock

    finished(tmp_path / "out", "built")
    with FolderLock(tmp_path / "out", shared=True), FolderLock(tmp_path / "out", shared=True):  # two validates
        with pytest.raises(EdgeDeployError, match=rf"edgedeploy validate \(PID {os.getpid()}\) is reading"):
            OutputFolder(tmp_path / "out").__enter__()
    with OutputFolder(tmp_path / "out"):
        with pytest.raises(EdgeDeployError, match=rf"\(PID {os.getpid()}\) is writing this folder"):
            FolderLock(tmp_path / "out", shared=True).__enter__()
    assert (tmp_path / "out" / "model.onnx").read_text() == "built"


def test_legacy_folders_are_known_by_their_report(tmp_path):
    import json

    from edgedeploy.outfolder import folder_kind

    for name, kind in (("b", "build"), ("v", "validate"), ("other", None)):
        (tmp_path / name).mkdir()
        schema = "edgedeploy.report/2" if kind else "something/1"
        (tmp_path / name / "report.json").write_text(json.dumps({"schema": schema, "kind": kind}))
    assert [folder_kind(tmp_path / n) for n in ("b", "v", "other")] == ["build", "report", None]


@pytest.mark.parametrize("raised", [RuntimeError("closing tag '[/]' at position 3"), MemoryError("[bold]x")])
def test_the_error_handler_prints_markup_as_text(monkeypatch, capsys, raised):
    def fail():
        raise raised

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(raised) in lines[0], lines
    assert lines[0].startswith("internal error:" if isinstance(raised, RuntimeError) else "error: out of memory")
