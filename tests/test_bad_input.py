"""The bad-input matrix: each way a build can be fed bad input or hit a fault, run through the real command line.

A refused case exits 2 (usage error) or 1 (failure) with one `error:` line naming the file, tensor or node and
saying what to do, no traceback, and an output folder that held a finished build is left byte for byte with no
staging leftovers; a handled fault (a stale or corrupt calibration cache entry) exits 0 and the report says what was
done. A build killed with SIGKILL mid-stage has its own test. tools/bad_input_table.py prints the matrix as a
case → exit → message table (each case appends its row to the file named by EDGEDEPLOY_BAD_INPUT_TABLE).

Builds are of two-node ONNX models made here with onnx.helper (seconds each); only the two checkpoint cases
import torch.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from cli_helpers import error_line, run_cli
from edgedeploy import fileio

HW = 16
LATENCY = {"warmup": 1, "iterations": 3, "batch_sizes": [1], "async_requests": 0}
TABLE = os.environ.get("EDGEDEPLOY_BAD_INPUT_TABLE")


# ---------------------------------------------------------------------------------------------------- models

def _model(nodes: list, initializers: list, output: str, channels: int, hw: int = HW,
           domains: tuple[str, ...] = ()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, hw, hw])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", channels, hw, hw])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    *(helper.make_opsetid(d, 1) for d in domains)])
    model.ir_version = 9
    return model


def conv_model(*tail: tuple[str, str]) -> onnx.ModelProto:
    """images → Conv (4 filters, weight `W`) → Relu → a node per (op type, domain) of `tail`, each on the last."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
    nodes = [helper.make_node("Conv", ["images", "W"], ["conv"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"], name="relu0")]
    last = "relu"
    for i, (op, domain) in enumerate(tail):
        nodes.append(helper.make_node(op, [last], [f"t{i}"], name=f"{op.lower()}{i}", domain=domain))
        last = f"t{i}"
    return _model(nodes, [weight], last, 4, domains=tuple(d for _, d in tail if d))


def inverse_model() -> onnx.ModelProto:
    """A com.microsoft Inverse node: ONNX Runtime runs it, OpenVINO has no conversion for it."""
    eye = numpy_helper.from_array(4 * np.eye(4, dtype=np.float32), "eye")
    return _model([helper.make_node("Add", ["images", "eye"], ["a"], name="add0"),
                   helper.make_node("Inverse", ["a"], ["y"], name="inverse0", domain="com.microsoft")],
                  [eye], "y", 3, hw=4, domains=("com.microsoft",))


def scaled_model(factor: float) -> onnx.ModelProto:
    """images × factor × factor: the optimizer folds the two into one constant beyond fp16's range."""
    k = numpy_helper.from_array(np.array(factor, np.float32), "k")
    return _model([helper.make_node("Mul", ["images", "k"], ["a"], name="mul0"),
                   helper.make_node("Mul", ["a", "k"], ["y"], name="mul1")], [k], "y", 3)


def with_external_weight(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    """`model` with the bytes of its weight `W` moved to the external file `location`."""
    weight = model.graph.initializer[0]
    length = len(weight.raw_data)
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return model


def images(n: int, hw: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, hw, hw, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------- bench

def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def snapshot(path: Path) -> dict[str, bytes] | None:
    """Every file under `path` (or `path` itself) by relative name; None when nothing is there."""
    if path.is_file():
        return {".": path.read_bytes()}
    if not path.is_dir():
        return None
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    """Staging or old folders (or anything else but the lock file) left beside the output folder."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*") if p.name != f".{out.name}.lock")


@dataclass
class Bench:
    """The models, data and finished builds the cases start from (made once per module)."""

    root: Path
    built: Path = field(init=False)
    _int8: Path | None = None

    def __post_init__(self) -> None:
        onnx.save(conv_model(), self.root / "conv.onnx")
        np.savez(self.root / "val.npz", images=images(8, HW))
        np.savez(self.root / "val4.npz", images=images(8, 4))
        for seed in (0, 1):
            np.save(self.root / f"calib{seed}.npy",
                    np.random.default_rng(seed).random((8, 3, HW, HW)).astype(np.float32))
        self.built = self.build(self.config(self.root), self.root / "built")

    def config(self, folder: Path, onnx_file: Path | None = None, name: str = "config.yaml", **changes) -> Path:
        """A config for the conv model (or `onnx_file`), updated key by key from `changes`."""
        data = {"name": "tiny", "model": {"onnx": str(onnx_file or self.root / "conv.onnx")},
                "inputs": [{"name": "images", "shape": ["batch", 3, HW, HW]}],
                "optimize": {"simplifier": "none"},
                "validation": {"data": str(self.root / "val.npz"), "latency": LATENCY},
                "int8": {"qdq": {"method": "ort"}}}
        path = folder / name
        path.write_text(yaml.safe_dump(_merge(data, changes)))
        return path

    def build(self, config: Path, out: Path, *flags: str) -> Path:
        result = run_cli("build", str(config), "--target", "onnxruntime", "--out", str(out), *flags)
        assert result.returncode == 0, result.stderr
        return out

    def model(self, folder: Path, model: onnx.ModelProto, name: str = "model.onnx") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(model, folder / name)
        return folder / name

    @property
    def int8(self) -> Path:
        """A finished int8 build (Q/DQ by ONNX Runtime, calibrated on calib0.npy) with its calibration cache."""
        if self._int8 is None:
            config = self.config(self.root, name="int8.yaml", calibration={"data": str(self.root / "calib0.npy")})
            self._int8 = self.build(config, self.root / "int8", "--precision", "int8")
        return self._int8


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Bench:
    return Bench(tmp_path_factory.mktemp("bench"))


# ---------------------------------------------------------------------------------------------------- cases

@dataclass
class Run:
    """One command line run: its arguments and what its error line must name (file, tensor, node)."""

    args: list[str]
    names: tuple[str, ...] = ()
    popen: dict = field(default_factory=dict)
    after: Callable[[subprocess.CompletedProcess | None], None] | None = None  # run last, also on failure
    handled: Callable[[], str] | None = None  # exit-0 cases: checks the outcome, returns what the report says


@dataclass
class Case:
    name: str
    exit: int  # 2 usage error, 1 failure, 0 handled
    says: tuple[str, ...]  # what went wrong and what to do, as the error line says it
    setup: Callable[[Bench, Path, Path], Run]  # (bench, case folder, output folder) → the run
    existing: bool = False  # the output folder holds a finished build that must survive
    completes: bool = False  # the build ran to its end (a check failed): its folder, report saying why, is written


CASES: list[Case] = []


def case(name: str, exit: int, *says: str, existing: bool = False, completes: bool = False):
    def register(setup: Callable[[Bench, Path, Path], Run]) -> Callable:
        CASES.append(Case(name, exit, says, setup, existing, completes))
        return setup
    return register


def build(config: Path, out: Path, *flags: str) -> list[str]:
    return ["build", str(config), "--out", str(out), *(flags or ("--target", "onnxruntime"))]


# configs ------------------------------------------------------------------------------------------------------

@case("config file missing", 2, "config file not found", "check the path")
def _(bench, here, out):
    return Run(build(here / "missing.yaml", out), (str(here / "missing.yaml"),))


@case("invalid YAML (tab)", 2, "invalid YAML", "fix the syntax")
def _(bench, here, out):
    (here / "c.yaml").write_text("name: tiny\nmodel:\n\tonnx: conv.onnx\n")
    return Run(build(here / "c.yaml", out), (f"{here / 'c.yaml'}:3:",))


@case("invalid YAML (unclosed bracket)", 2, "invalid YAML", "fix the syntax")
def _(bench, here, out):
    (here / "c.yaml").write_text("name: tiny\ninputs: [{name: images, shape: [batch, 3]}\noutputs: [y]\n")
    return Run(build(here / "c.yaml", out), (f"{here / 'c.yaml'}:",))


@case("unknown key", 2, "unknown key `surprise`", "see the config reference")
def _(bench, here, out):
    return Run(build(bench.config(here, surprise=1), out), (str(here / "config.yaml"),))


@case("invalid --target", 2, "invalid --target 'tpu'", "use one of")
def _(bench, here, out):
    return Run(build(bench.config(here), out, "--target", "tpu"), ("--target",))


@case("invalid --precision", 2, "invalid --precision 'fp8'", "use one of")
def _(bench, here, out):
    return Run(build(bench.config(here), out, "--precision", "fp8"), ("--precision",))


@case("validation data missing", 2, "validation.data not found", "check validation.data")
def _(bench, here, out):
    return Run(build(bench.config(here, validation={"data": str(here / "val.npz")}), out), (str(here / "val.npz"),))


@case("TensorRT missing", 1, "TensorRT is not installed", "pip install")
def _(bench, here, out):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here, so the missing-SDK path cannot be exercised")
    except (ImportError, OSError):
        pass
    return Run(build(bench.config(here), out, "--target", "trt"), ("TensorRT",))


# the ONNX file --------------------------------------------------------------------------------------------------

@case("ONNX file missing", 2, "model.onnx not found", "check model.onnx")
def _(bench, here, out):
    return Run(build(bench.config(here, here / "none.onnx"), out), (str(here / "none.onnx"),))


@case("ONNX corrupt (random bytes)", 2, "not a readable ONNX model", "Re-export the model")
def _(bench, here, out):
    (here / "m.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    return Run(build(bench.config(here, here / "m.onnx"), out), (str(here / "m.onnx"),))


@case("ONNX truncated (first half)", 2, "not a readable ONNX model", "Re-export the model")
def _(bench, here, out):
    data = (bench.root / "conv.onnx").read_bytes()
    (here / "m.onnx").write_bytes(data[: len(data) // 2])
    return Run(build(bench.config(here, here / "m.onnx"), out), (str(here / "m.onnx"),))


def _external(bench, here, out, location):
    (here / "secret.bin").write_bytes(bytes(4 * 4 * 27))  # exists, so only the location is refused
    model = bench.model(here / "m", with_external_weight(conv_model(), location))
    return Run(build(bench.config(here, model), out), (str(model), "tensor 'W'", repr(location)))


@case("external data outside the folder (../)", 2, "outside the model's folder; refused",
      "move the data file into the model's folder")
def _(bench, here, out):
    return _external(bench, here, out, "../secret.bin")


@case("external data at an absolute path", 2, "outside the model's folder; refused",
      "move the data file into the model's folder")
def _(bench, here, out):
    return _external(bench, here, out, "/etc/passwd")


@case("external data file missing", 2, "not found", "copy the data file next to the model")
def _(bench, here, out):
    return _external(bench, here, out, "weights.bin")


@case("input name not in the model", 2, "the model has no input 'pixels' (its inputs: images)",
      "set inputs[].name")
def _(bench, here, out):
    config = bench.config(here, inputs=[{"name": "pixels", "shape": ["batch", 3, HW, HW]}])
    return Run(build(config, out), (str(bench.root / "conv.onnx"),))


@case("input shape differs from the model", 2,
      f"input 'images' has shape [batch, 3, {HW}, {HW}] in the model, the config says [batch, 3, 32, 32]",
      "make inputs[].shape match the model")
def _(bench, here, out):
    config = bench.config(here, inputs=[{"name": "images", "shape": ["batch", 3, 32, 32]}])
    return Run(build(config, out), (str(bench.root / "conv.onnx"),))


@case("input rank differs from the model", 2, "the config says [batch, 3, 16]", "make inputs[].shape match")
def _(bench, here, out):
    config = bench.config(here, inputs=[{"name": "images", "shape": ["batch", 3, HW]}])
    return Run(build(config, out), (str(bench.root / "conv.onnx"),))


@case("input dtype differs from the model", 2, "input 'images' is float32 in the model, the config says uint8",
      "set inputs[].dtype to float32")
def _(bench, here, out):
    config = bench.config(here, inputs=[{"name": "images", "shape": ["batch", 3, HW, HW], "dtype": "uint8"}])
    return Run(build(config, out), (str(bench.root / "conv.onnx"),))


@case("output name not in the model", 2, "the model has no output 'scores' (its outputs: relu)",
      "list the model's output names")
def _(bench, here, out):
    return Run(build(bench.config(here, outputs=["scores"]), out), (str(bench.root / "conv.onnx"),))


@case("kept output not in the model", 2, "output 'scores' is not an output of this model",
      "Choose from the model's outputs")
def _(bench, here, out):
    return Run(build(bench.config(here, optimize={"keep_outputs": ["scores"]}), out), ("optimize keep_outputs",))


for _target in ("onnxruntime", "openvino"):
    @case(f"custom-domain op ({_target})", 1, "is neither an ONNX operator nor one ONNX Runtime implements",
          "replace it with standard ONNX operators")
    def _(bench, here, out, target=_target):
        model = bench.model(here, conv_model(("MyCustomOp", "com.example")))
        return Run(build(bench.config(here, model), out, "--target", target),
                   (str(model), "node 'mycustomop0' (com.example:MyCustomOp)"))


@case("op OpenVINO cannot convert", 1, "OpenVINO has no conversion for node 'inverse0' (com.microsoft:Inverse)",
      "build it with --target onnxruntime")
def _(bench, here, out):
    config = bench.config(here, bench.model(here, inverse_model()), inputs=[{"name": "images",
                                                                              "shape": ["batch", 3, 4, 4]}],
                          validation={"data": str(bench.root / "val4.npz")})
    return Run(build(config, out, "--target", "openvino"), (str(out / "deploy.onnx"),))


@case("NaN in the outputs", 1, "check t1.finite failed on the reference", "NaN", "check its weights")
def _(bench, here, out):
    model = bench.model(here, conv_model(("Neg", ""), ("Sqrt", "")))  # sqrt of a negative
    return Run(build(bench.config(here, model), out), (str(model), "output 't1'"))


@case("Inf in the outputs", 1, "check t2.finite failed on the reference", "Inf", "check its weights")
def _(bench, here, out):
    model = bench.model(here, conv_model(("Neg", ""), ("Relu", ""), ("Log", "")))  # log(0)
    return Run(build(bench.config(here, model), out), (str(model), "output 't2'"))


@case("fp16 out of range", 1, "checks failed: y.rel_l2", "exceeds limit", "the report has every figure",
      completes=True)
def _(bench, here, out):
    model = bench.model(here, scaled_model(300.0))
    return Run(build(bench.config(here, model), out, "--target", "onnxruntime", "--precision", "fp16"),
               (str(out / "report.md"),))


# PyTorch checkpoints ------------------------------------------------------------------------------------------

def _checkpoint_config(bench: Bench, here: Path, checkpoint: Path) -> Path:
    return bench.config(here, model={"onnx": None, "factory": "edgedeploy.demo.model:build_demo",
                                     "checkpoint": str(checkpoint)},
                        inputs=[{"name": "images", "shape": ["batch", 3, 64, 64]}], validation={"data": None})


@case("checkpoint missing", 2, "model.checkpoint not found", "check model.checkpoint")
def _(bench, here, out):
    return Run(build(_checkpoint_config(bench, here, here / "none.pt"), out), (str(here / "none.pt"),))


@case("checkpoint corrupt", 1, "cannot read checkpoint", "corrupt, truncated", existing=True)
def _(bench, here, out):
    (here / "bad.pt").write_bytes(b"not a checkpoint")
    return Run(build(_checkpoint_config(bench, here, here / "bad.pt"), out), (str(here / "bad.pt"),))


class _Planted:
    """A pickle payload that would create a file if unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@case("pickled checkpoint without --trust-code", 2, "holds pickled Python objects", "refused", "--trust-code")
def _(bench, here, out):
    (here / "evil.pt").write_bytes(pickle.dumps({"model": _Planted(here / "pwned")}, protocol=2))

    def never_executed(result):
        assert not (here / "pwned").exists()

    return Run(build(_checkpoint_config(bench, here, here / "evil.pt"), out), (str(here / "evil.pt"),),
               after=never_executed)


# calibration ----------------------------------------------------------------------------------------------------

def _int8(bench: Bench, here: Path, out: Path, data: Path) -> list[str]:
    return build(bench.config(here, calibration={"data": str(data)}), out, "--target", "onnxruntime",
                 "--precision", "int8")


@case("calibration set empty", 2, "calibration set is empty", "point calibration.data at")
def _(bench, here, out):
    (here / "calib").mkdir()
    return Run(_int8(bench, here, out, here / "calib"), (str(here / "calib"),))


@case("calibration image corrupt", 2, "unreadable or corrupt calibration image", "replace or delete the file")
def _(bench, here, out):
    (here / "calib").mkdir()
    Image.fromarray(images(1, HW)[0]).save(here / "calib" / "a.png")
    (here / "calib" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return Run(_int8(bench, here, out, here / "calib"), (str(here / "calib" / "b.png"),))


@case("calibration samples of the wrong shape", 2, "tensor 'images' has shape [3, 8, 8] per sample",
      f"expected [batch, 3, {HW}, {HW}]", "fix the calibration data")
def _(bench, here, out):
    np.save(here / "wrong.npy", np.zeros((4, 3, 8, 8), np.float32))
    return Run(_int8(bench, here, out, here / "wrong.npy"), ("wrong.npy[0]",))


def _cache_note(out: Path, status: str) -> str:
    """The report's word on the calibration cache, once its paths and the manifest's are checked."""
    cache = json.loads((out / "report.json").read_text())["precision_stage"]["cache"]
    assert cache["status"] == status, cache
    assert Path(cache["dir"]).is_dir() and Path(cache["dir"]).is_relative_to(out)  # in the final folder
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(fileio.sha256_file(out / rel) == digest for rel, digest in manifest["files"].items())
    return f"calibration cache {cache['status']}: {cache['note']}"


def _cache_handled(out: Path, status: str, says: str) -> Callable[[], str]:
    """The check of a handled cache fault: the report names the status and why."""
    def handled() -> str:
        note = _cache_note(out, status)
        assert says in note, note
        return note

    return handled


@case("stale calibration cache (handled: rebuilt, reported)", 0)
def _(bench, here, out):
    shutil.copytree(bench.int8, out)
    return Run(_int8(bench, here, out, bench.root / "calib1.npy"),
               handled=_cache_handled(out, "rebuilt", "data_sha256 changed"))


@case("corrupt calibration cache entry (handled: refused, rebuilt)", 0)
def _(bench, here, out):
    shutil.copytree(bench.int8, out)
    for key_file in out.glob("cache/*/*/key.json"):
        key_file.write_text("{ not json")
    return Run(_int8(bench, here, out, bench.root / "calib0.npy"), handled=_cache_handled(out, "refused", "key file"))


@case("cached calibration result bit-flipped (handled: refused by content hash, rebuilt)", 0)
def _(bench, here, out):
    shutil.copytree(bench.int8, out)
    (cached,) = out.glob("cache/*/*/model.qdq.onnx")
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    return Run(_int8(bench, here, out, bench.root / "calib0.npy"),
               handled=_cache_handled(out, "refused", "model.qdq.onnx: content hash mismatch"))


# the output folder ------------------------------------------------------------------------------------------

@case("--out is an existing file", 2, "the output path is a file, not a folder", "choose a folder for --out")
def _(bench, here, out):
    out.write_text("notes")
    return Run(build(bench.config(here), out), (str(out),))


@case("--out is a folder edgedeploy did not write", 2, "holds files but no report.json",
      "choose a new or empty folder")
def _(bench, here, out):
    out.mkdir()
    (out / "thesis.tex").write_text("months of work")
    return Run(build(bench.config(here), out), (str(out),))


def _drop_dac_override() -> None:
    """In the child (preexec): drop root's permission-bypass capabilities from the bounding set, so the exec'd
    command is refused by file permissions like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@case("output folder not writable", 1, "the folder is not writable (permission denied)", "make it writable",
      existing=True)
def _(bench, here, out):
    popen = {}
    out.chmod(0o555)
    if os.geteuid() == 0:
        probe = subprocess.run([sys.executable, "-c", f"open({str(out / 'probe')!r}, 'w')"], capture_output=True,
                               preexec_fn=_drop_dac_override)  # noqa: PLW1509
        if probe.returncode == 0:
            out.chmod(0o755)
            (out / "probe").unlink()
            pytest.skip("running as root, permissions do not apply (CAP_DAC_OVERRIDE cannot be dropped here)")
        popen = {"preexec_fn": _drop_dac_override}
    return Run(build(bench.config(here), out), (str(out),), popen, after=lambda result: out.chmod(0o755))


def _file_size_limit(folder: Path) -> tuple[Path, Callable[[], None]]:
    """The largest file under `folder`, and a preexec function limiting file sizes to below it but above every other
    file, so a command rewriting the folder fails at that file's write (EFBIG, SIGXFSZ ignored)."""
    sizes = sorted((p.stat().st_size, p) for p in folder.rglob("*") if p.is_file())
    (second, _), (largest, path) = sizes[-2:]
    limit = (second + largest) // 2

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return path, limit_file_size


@case("disk full (file size limit)", 1, "cannot write: file too large", "nothing was replaced", existing=True)
def _(bench, here, out):
    path, limit = _file_size_limit(out)
    return Run(build(bench.config(here), out), (str(path),), {"preexec_fn": limit})  # noqa: PLW1509


@case("disk full during validate", 1, "cannot write: file too large", "nothing was replaced", existing=True)
def _(bench, here, out):
    first = run_cli("validate", str(out))  # its report folder, out-validate, must survive the second run
    assert first.returncode == 0, first.stderr
    path, limit = _file_size_limit(out.parent / f"{out.name}-validate")
    return Run(["validate", str(out)], (str(path),), {"preexec_fn": limit})  # noqa: PLW1509


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


def wait_for(proc: subprocess.Popen, text: str, timeout: float = 120) -> None:
    """Read `proc`'s stderr (unbuffered, so nothing waits in a buffer) until it holds `text`."""
    deadline = time.monotonic() + timeout
    fd, seen = proc.stderr.fileno(), b""
    while text.encode() not in seen:
        ready = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]
        chunk = os.read(fd, 1 << 16) if ready else b""
        if not chunk:  # the command ended, or the time is up
            proc.kill()
            raise AssertionError(f"{text!r} never appeared on stderr: {seen.decode(errors='replace')}")
        seen += chunk


# ---------------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_clear_line_and_keeps_the_output(case, bench, tmp_path):
    out = tmp_path / "out"
    if case.existing:
        shutil.copytree(bench.built, out)
    run = case.setup(bench, tmp_path, out)
    before, result = snapshot(out), None
    try:
        result = run_cli(*run.args, **run.popen)
        if case.exit == 0:
            assert result.returncode == 0, result.stderr
            message = run.handled()
        else:
            message = error_line(result)
            assert result.returncode == case.exit, result.stderr
            for text in (*case.says, *run.names):
                assert text in message, text
            if case.completes:
                assert json.loads((out / "report.json").read_text())["passed"] is False
            else:
                assert snapshot(out) == before  # a previous build unchanged, and no folder where there was none
    finally:
        if run.after is not None:  # also on failure: it may resume or reap a process the setup started
            run.after(result)
    assert leftovers(out) == []
    if TABLE:
        shown = message.removeprefix("error: ").replace(str(tmp_path), "<case>").replace(str(bench.root), "<bench>")
        with open(TABLE, "a") as f:
            f.write(json.dumps({"case": case.name, "exit": result.returncode, "message": shown}) + "\n")


@pytest.mark.parametrize("stage", ["export", "build"])
def test_sigkill_mid_build_leaves_the_previous_build_whole(bench, tmp_path, stage):
    """Killed after the `stage` line (export: optimizing or later; build: validating, every new artifact written)."""
    out = tmp_path / "out"
    shutil.copytree(bench.built, out)
    before = snapshot(out)
    slow = bench.config(tmp_path, validation={"latency": {**LATENCY, "duration_s": 60}})
    proc = subprocess.Popen([sys.executable, "-m", "edgedeploy.cli", *build(slow, out)], stderr=subprocess.PIPE)
    wait_for(proc, f"✓ {stage}")
    assert (tmp_path / ".out.staging" / "raw.onnx").is_file()  # it was writing its own files
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)

    assert snapshot(out) == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(fileio.sha256_file(out / rel) == digest for rel, digest in manifest["files"].items())
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]

    bench.build(bench.config(tmp_path, name="again.yaml"), out)  # lock released by the kernel, leftovers cleared
    assert leftovers(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(fileio.sha256_file(out / rel) == digest for rel, digest in manifest["files"].items())
