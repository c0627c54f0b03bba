"""The bad-input matrix: each way a build, validate, debug or optimize can be fed bad input or hit a fault, run
through the real command line, as a careless user and as an attacker would: configs, ONNX files, checkpoints,
calibration and validation data, reference.npz, baselines and manifests that are damaged, hostile or not files at all
(FIFOs, devices), output paths that are symbolic links, the root, under a file or inside a build folder, planted lock
and staging links, and a build and a validate of one folder at once (both orders).

A refused case exits 2 (usage error) or 1 (failure) with one `error:` line naming the file, tensor or node and
saying what to do, no traceback and never `internal error`, and an output folder that held a finished build (and any
other path the case names in `Run.keep`) is left byte for byte with no staging leftovers; a handled fault (a stale or
corrupt calibration cache entry, a planted staging link) exits 0 and the report says what was done. A build killed with
SIGKILL mid-stage has its own test. tools/bad_input_table.py prints the matrix as a case → exit → message table with
its counts (each case appends its row to the file named by EDGEDEPLOY_BAD_INPUT_TABLE).

Builds are of two-node ONNX models made here with onnx.helper (seconds each); only the checkpoint cases import
torch.
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

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds (~2 min on 2 cores); CI runs it

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
    _openvino: Path | None = None

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
    def openvino(self) -> Path:
        """A finished OpenVINO fp32 build of the conv model."""
        if self._openvino is None:
            self._openvino = self.root / "openvino"
            result = run_cli(*build(self.config(self.root), self._openvino, "--target", "openvino"))
            assert result.returncode == 0, result.stderr
        return self._openvino

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
    keep: tuple[Path, ...] = ()  # paths besides the output folder that must be left as they were


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


@case("--out is a folder edgedeploy did not write", 2, "holds files but no edgedeploy-build.json",
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
    path, limit = _file_size_limit(here / "out-validate")
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


# folders a report must not replace -------------------------------------------------------------------------------

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


# paths refused before any work -----------------------------------------------------------------------------------

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


def _victim(here: Path) -> Path:
    (here / "victim.txt").write_text("a file the user can write")
    return here / "victim.txt"


@case("lock file planted as a symbolic link", 1, "the lock file is a symbolic link; refused",
      "remove the link", existing=True)
def _(bench, here, out):
    (here / ".out.lock").symlink_to(_victim(here))
    return Run(build(bench.config(here), out), (str(here / ".out.lock"),), keep=(here / "victim.txt",))


@case("lock file planted as a hard link", 1, "the lock file is a file with other hard links", existing=True)
def _(bench, here, out):
    os.link(_victim(here), here / ".out.lock")
    return Run(build(bench.config(here), out), (str(here / ".out.lock"),), keep=(here / "victim.txt",))


@case("lock file planted as a folder", 1, "the lock file is a folder", existing=True)
def _(bench, here, out):
    (here / ".out.lock").mkdir()
    return Run(build(bench.config(here), out), (str(here / ".out.lock"),))


@case("lock file planted as a FIFO", 1, "the lock file is a FIFO (named pipe)", existing=True)
def _(bench, here, out):
    os.mkfifo(here / ".out.lock")
    return Run(build(bench.config(here), out), (str(here / ".out.lock"),))


def _planted_links_removed(out: Path, victim: Path, link: Path) -> Callable[[], str]:
    def handled() -> str:
        assert sorted(p.name for p in victim.iterdir()) == ["thesis.tex"] and not os.path.lexists(link)
        assert json.loads((out / "report.json").read_text())["passed"]
        return f"built; the planted link {link.name} was removed, its target untouched"

    return handled


for _folder in ("staging", "old"):
    @case(f"{_folder} folder planted as a symbolic link (handled: the link removed, not followed)", 0)
    def _(bench, here, out, planted=f".out.{_folder}"):
        (here / "mine").mkdir()
        (here / "mine" / "thesis.tex").write_text("months of work")
        (here / planted).symlink_to(here / "mine")
        return Run(build(bench.config(here), out), keep=(here / "mine",),
                   handled=_planted_links_removed(out, here / "mine", here / planted))


# a build and a validate of one folder at once ---------------------------------------------------------------------

def wait_for_lock(proc: subprocess.Popen, lock: Path, timeout: float = 120) -> None:
    """Wait until `proc` holds a flock on `lock` (as /proc/locks lists it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if lock.exists():
            st = lock.stat()
            inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
            held = [line.split() for line in Path("/proc/locks").read_text().splitlines()]
            if any(f[1] == "FLOCK" and f[4] == str(proc.pid) and f[5] == inode for f in held if "->" not in f):
                return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"PID {proc.pid} never locked {lock}: {proc.communicate()[1]}")


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


# untrusted arrays: validation data --------------------------------------------------------------------------------

def _validation(bench: Bench, here: Path, out: Path, data: Path, task: str = "none", **arrays) -> Run:
    if arrays:
        np.savez(data, **arrays)
    return Run(build(bench.config(here, validation={"data": str(data), "task": task}), out), (str(data),))


def _zip_member_flipped(path: Path, source: Path) -> None:
    data = bytearray(source.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the first member's data: the zip directory stays readable
    path.write_bytes(bytes(data))


@case("validation npz with an object array", 2, "array 'images' holds Python objects", "never read")
def _(bench, here, out):
    return _validation(bench, here, out, here / "v.npz", images=np.array([{"x": 1}], dtype=object))


@case("validation npz with a 0-d array", 2, "array 'images' is a 0-d scalar")
def _(bench, here, out):
    return _validation(bench, here, out, here / "v.npz", images=np.array(3.0))


@case("validation npz with a corrupt member", 2, "array 'images' is corrupt or truncated", "Bad CRC-32")
def _(bench, here, out):
    _zip_member_flipped(here / "v.npz", bench.root / "val.npz")
    return _validation(bench, here, out, here / "v.npz")


@case("validation npz truncated", 2, "the validation data is not a readable .npz file")
def _(bench, here, out):
    data = (bench.root / "val.npz").read_bytes()
    (here / "v.npz").write_bytes(data[: len(data) // 2])
    return _validation(bench, here, out, here / "v.npz")


@case("validation npz of 0 bytes", 2, "the validation data is empty (0 bytes)")
def _(bench, here, out):
    (here / "v.npz").write_bytes(b"")
    return _validation(bench, here, out, here / "v.npz")


@case("validation data is /dev/null", 2, "validation.data is a device, not a file")
def _(bench, here, out):
    return _validation(bench, here, out, Path("/dev/null"))


@case("validation data is a FIFO", 2, "validation.data is a FIFO (named pipe), not a file")
def _(bench, here, out):
    os.mkfifo(here / "v.npz")
    return _validation(bench, here, out, here / "v.npz")


def _huge_header(shape: tuple[int, ...]) -> bytes:
    """An .npy that promises `shape` float32 values and holds none of them."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


@case("validation npz promising terabytes", 2, "is truncated: its header promises 4000000000000 bytes")
def _(bench, here, out):
    import zipfile
    with zipfile.ZipFile(here / "v.npz", "w") as z:
        z.writestr("images.npy", _huge_header((100000, 100000, 100)))
    return _validation(bench, here, out, here / "v.npz")


@case("validation npz with a member that is not an array", 2, "holds 'notes.txt', which is not a NumPy array")
def _(bench, here, out):
    import zipfile
    shutil.copy(bench.root / "val.npz", here / "v.npz")
    with zipfile.ZipFile(here / "v.npz", "a") as z:
        z.writestr("notes.txt", "hello")
    return _validation(bench, here, out, here / "v.npz")


@case("validation npz with strings", 2, "array 'images' has dtype <U5", "only bool, integer and floating-point")
def _(bench, here, out):
    return _validation(bench, here, out, here / "v.npz", images=np.array(["hello"] * 8))


@case("validation npz holding a pickle", 2, "the validation data is not an .npz", "does not start like one")
def _(bench, here, out):
    (here / "v.npz").write_bytes(pickle.dumps({"images": [1, 2, 3]}))
    return _validation(bench, here, out, here / "v.npz")


@case("validation images as floats (would be scaled by 1/255 twice)", 2,
      "`images` must be uint8 (N, H, W, 3), got float32", "float arrays are not raw images")
def _(bench, here, out):
    return _validation(bench, here, out, here / "v.npz", images=images(8, HW).astype(np.float32) / 255)


@case("validation npz with no samples", 2, "the inputs hold different or no sample counts")
def _(bench, here, out):
    return _validation(bench, here, out, here / "v.npz", images=images(8, HW)[:0])


@case("detection targets not (M, 6)", 2, "`targets` must be (M, 6) numbers", "fix the detection labels")
def _(bench, here, out):
    return _validation(bench, here, out, here / "v.npz", task="detection", images=images(8, HW), targets=np.zeros(5))


# untrusted arrays: calibration data -----------------------------------------------------------------------------

@case("calibration npy with an object array", 2, "the calibration data holds Python objects", "never read")
def _(bench, here, out):
    np.save(here / "c.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    return Run(_int8(bench, here, out, here / "c.npy"), (str(here / "c.npy"),))


@case("calibration npy with a 0-d array", 2, "the calibration data is a 0-d scalar")
def _(bench, here, out):
    np.save(here / "c.npy", np.array(1.0, np.float32))
    return Run(_int8(bench, here, out, here / "c.npy"), (str(here / "c.npy"),))


@case("calibration npy truncated", 2, "the calibration data is corrupt or truncated")
def _(bench, here, out):
    data = (bench.root / "calib0.npy").read_bytes()
    (here / "c.npy").write_bytes(data[: len(data) // 2])
    return Run(_int8(bench, here, out, here / "c.npy"), (str(here / "c.npy"),))


@case("calibration npy of 0 bytes", 2, "the calibration data is empty (0 bytes)")
def _(bench, here, out):
    (here / "c.npy").write_bytes(b"")
    return Run(_int8(bench, here, out, here / "c.npy"), (str(here / "c.npy"),))


@case("calibration npy promising terabytes", 2, "GiB of arrays, more than half this machine's memory",
      "refused before reading")
def _(bench, here, out):
    (here / "c.npy").write_bytes(_huge_header((100000, 100000, 100)))
    return Run(_int8(bench, here, out, here / "c.npy"), (str(here / "c.npy"),))


@case("calibration data is /dev/null", 2, "calibration data is a device, not a file or a folder")
def _(bench, here, out):
    return Run(_int8(bench, here, out, Path("/dev/null")), ("/dev/null",))


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB pixels (and holds none): what a decompression bomb shows first."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@case("calibration image over the pixel budget", 2, "calibration image is 8000x8000 (64 megapixels)",
      "more than the 50 megapixels", "downscale it")
def _(bench, here, out):
    (here / "calib").mkdir()
    (here / "calib" / "big.png").write_bytes(_png_header(8000, 8000))
    return Run(_int8(bench, here, out, here / "calib"), (str(here / "calib" / "big.png"),))


@case("calibration image decompression bomb", 2, "calibration image is more than the 50 megapixels",
      "decompression bomb")
def _(bench, here, out):
    (here / "calib").mkdir()
    (here / "calib" / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    return Run(_int8(bench, here, out, here / "calib"), (str(here / "calib" / "bomb.png"),))


# untrusted arrays: reference.npz (validate) ------------------------------------------------------------------------

def _reference(out: Path, **changes) -> Run:
    with np.load(out / "reference.npz") as data:
        arrays = {k: data[k] for k in data.files} | changes
    np.savez(out / "reference.npz", **arrays)
    return Run(["validate", str(out)], (str(out / "reference.npz"),), keep=(out.with_name("out-validate"),))


@case("reference.npz with an object array", 2, "array 'input.images' holds Python objects",
      "changed since the build", existing=True)
def _(bench, here, out):
    return _reference(out, **{"input.images": np.array([{"x": 1}], dtype=object)})


@case("reference.npz with a 0-d array", 2, "array 'output.relu' is a 0-d scalar", existing=True)
def _(bench, here, out):
    return _reference(out, **{"output.relu": np.array(1.0, np.float32)})


@case("reference.npz with inputs and outputs of different counts", 2, "different or no sample counts",
      existing=True)
def _(bench, here, out):
    with np.load(out / "reference.npz") as data:
        return _reference(out, **{"input.images": data["input.images"][:3]})


@case("reference.npz input of the wrong dtype", 2, "input 'images' has dtype float64, the config says float32",
      "changed since the build", existing=True)
def _(bench, here, out):
    with np.load(out / "reference.npz") as data:
        return _reference(out, **{"input.images": data["input.images"].astype(np.float64)})


@case("reference.npz with a corrupt member", 2, "is corrupt or truncated", "Bad CRC-32", existing=True)
def _(bench, here, out):
    _zip_member_flipped(out / "reference.npz", bench.built / "reference.npz")
    return Run(["validate", str(out)], (str(out / "reference.npz"),), keep=(here / "out-validate",))


@case("reference.npz of 0 bytes", 2, "the reference.npz is empty (0 bytes)", existing=True)
def _(bench, here, out):
    (out / "reference.npz").write_bytes(b"")
    return Run(["validate", str(out)], (str(out / "reference.npz"),), keep=(here / "out-validate",))


# baselines (validate --baseline) -----------------------------------------------------------------------------------

def _baseline(here: Path, out: Path, change: Callable[[dict], None] | None = None, text: str | None = None) -> Run:
    report = json.loads((out / "report.json").read_text())
    if change is not None:
        change(report)
    (here / "baseline.json").write_text(text if text is not None else json.dumps(report))
    return Run(["validate", str(out), "--baseline", str(here / "baseline.json")], (str(here / "baseline.json"),),
               keep=(here / "out-validate",))


for _name, _says, _change in (
        ("tensors is a list", "baseline `tensors`: Input should be a valid dictionary",
         lambda r: r.update(tensors=[1, 2])),
        ("rel_l2 is NaN", "baseline `tensors.relu.rel_l2`: Input should be a finite number",
         lambda r: r["tensors"]["relu"].update(rel_l2=float("nan"))),
        ("rel_l2 is a string", "baseline `tensors.relu.rel_l2`: Input should be a valid number",
         lambda r: r["tensors"]["relu"].update(rel_l2="0.1")),
        ("latency is an object", "baseline `latency`: Input should be a valid list", lambda r: r.update(latency={})),
        ("latency without median_ms", "baseline `latency.0.median_ms`: Field required",
         lambda r: r["latency"][0].pop("median_ms")),
        ("latency cov is a string", "baseline `latency.0.cov`: Input should be a valid number",
         lambda r: r["latency"][0].update(cov="low")),
        ("batch is negative", "baseline `latency.0.batch`: Input should be greater than or equal to 1",
         lambda r: r["latency"][0].update(batch=-1)),
        ("task is a string", "baseline `task`: Input should be a valid dictionary", lambda r: r.update(task="x")),
        ("conditions is a list", "baseline `conditions`: Input should be a valid dictionary",
         lambda r: r.update(conditions=[1])),
        ("target unknown", "baseline `target`: Input should be 'openvino', 'onnxruntime' or 'trt'",
         lambda r: r.update(target="tpu"))):
    @case(f"baseline: {_name}", 2, _says, "use a report.json written by edgedeploy", existing=True)
    def _(bench, here, out, change=_change):
        return _baseline(here, out, change)


@case("baseline nested too deeply", 2, "the baseline report is not readable JSON (nested too deeply)", existing=True)
def _(bench, here, out):
    return _baseline(here, out, text="[" * 100_000 + "]" * 100_000)


@case("baseline is a FIFO", 2, "the baseline report is a FIFO (named pipe), not a file", existing=True)
def _(bench, here, out):
    os.mkfifo(here / "pipe.json")
    return Run(["validate", str(out), "--baseline", str(here / "pipe.json")], (str(here / "pipe.json"),),
               keep=(here / "out-validate",))


@case("baseline is /dev/zero", 2, "the baseline report is a device, not a file", existing=True)
def _(bench, here, out):
    return Run(["validate", str(out), "--baseline", "/dev/zero"], ("/dev/zero",), keep=(here / "out-validate",))


# manifest.json (validate) -----------------------------------------------------------------------------------------

def _manifest(here: Path, out: Path, change: Callable[[dict], None]) -> Run:
    manifest = json.loads((out / "manifest.json").read_text())
    change(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return Run(["validate", str(out)], (str(out / "manifest.json"),), keep=(here / "out-validate",))


for _name, _says, _change in (
        ("files is a list", "manifest.json `files`: Input should be a valid dictionary", lambda m: m.update(files=[1])),
        ("artifact is a string", "manifest.json `artifact`: Input should be a valid dictionary",
         lambda m: m.update(artifact="x")),
        ("artifact path escapes the folder", "'../../conv.onnx' is not a path inside the artifact folder",
         lambda m: m["artifact"].update(path="../../conv.onnx")),
        ("a file at an absolute path", "'/etc/passwd' is not a path inside the artifact folder",
         lambda m: m["files"].update({"/etc/passwd": "0" * 64})),
        ("artifact without path", "manifest.json `artifact.path`: Field required", lambda m: m["artifact"].pop("path")),
        ("spec is a list", "manifest.json `spec`: Input should be a valid dictionary", lambda m: m.update(spec=[])),
        ("a hash that is not sha256", "String should match pattern",
         lambda m: m["files"].update({"deploy.onnx": "md5:abc"}))):
    @case(f"manifest: {_name}", 2, _says, "rebuild it", existing=True)
    def _(bench, here, out, change=_change):
        return _manifest(here, out, change)


@case("manifest is a JSON list", 2, "manifest.json holds no build spec", existing=True)
def _(bench, here, out):
    (out / "manifest.json").write_text("[]")
    return Run(["validate", str(out)], (str(out / "manifest.json"),), keep=(here / "out-validate",))


# ONNX Runtime and OpenVINO refusing a model ---------------------------------------------------------------------

@case("ONNX opset from the future", 1, "ONNX Runtime cannot load the model: the model uses opset 30",
      "export the model with opset")
def _(bench, here, out):
    model = conv_model()
    model.opset_import[0].version = 30
    return Run(build(bench.config(here, bench.model(here, model)), out), (str(here / "model.onnx"),))


@case("ONNX type error the checker misses", 1, "ONNX Runtime cannot load the model: Type Error",
      "the graph has a type error")
def _(bench, here, out):
    k = numpy_helper.from_array(np.ones(1, np.int64), "k")
    model = _model([helper.make_node("Add", ["images", "k"], ["y"], name="add0")], [k], "y", 3)
    onnx.checker.check_model(model)  # the checker passes it
    return Run(build(bench.config(here, bench.model(here, model)), out), (str(here / "model.onnx"), "node (add0)"))


@case("ONNX node allocating petabytes", 1, "ONNX Runtime failed running the model", "Failed to allocate memory",
      "asks for more memory than this machine has")
def _(bench, here, out):
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20, 1 << 10], np.int64), "s")
    model = _model([helper.make_node("ConstantOfShape", ["s"], ["c"], name="huge0"),
                    helper.make_node("ReduceSum", ["c"], ["r"], name="sum0", keepdims=0),
                    helper.make_node("Add", ["images", "r"], ["y"], name="add0")], [shape], "y", 3)
    return Run(build(bench.config(here, bench.model(here, model)), out), (str(here / "model.onnx"), "'huge0'"))


@case("artifact model.onnx replaced by garbage", 1, "ONNX Runtime cannot load the model",
      "onnxruntime/model.onnx changed since the build", existing=True)
def _(bench, here, out):
    (out / "onnxruntime" / "model.onnx").write_bytes(b"not a model")
    return Run(["validate", str(out)], (str(out / "onnxruntime" / "model.onnx"),), keep=(here / "out-validate",))


@case("OpenVINO IR replaced by garbage", 1, "OpenVINO cannot compile the model for CPU",
      "openvino/model.xml changed since the build", existing=True)
def _(bench, here, out):
    shutil.rmtree(out)
    shutil.copytree(bench.openvino, out)
    (out / "openvino" / "model.xml").write_text("<net><layers><layer id='0' type='Nonsense'/></layers></net>")
    return Run(["validate", str(out)], (str(out / "openvino" / "model.xml"),), keep=(here / "out-validate",))


@case("safetensors checkpoint corrupt", 1, "cannot read checkpoint (SafetensorError", "save it again")
def _(bench, here, out):
    (here / "bad.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0" + b'{"a":1}' + b"garbage")
    return Run(build(_checkpoint_config(bench, here, here / "bad.safetensors"), out), (str(here / "bad.safetensors"),))


# config files that are not files, and values that were silently accepted ----------------------------------------

@case("config is a FIFO", 2, "the config file is a FIFO (named pipe), not a file")
def _(bench, here, out):
    os.mkfifo(here / "c.yaml")
    return Run(build(here / "c.yaml", out), (str(here / "c.yaml"),))


@case("config is /dev/zero", 2, "the config file is a device, not a file")
def _(bench, here, out):
    return Run(build(Path("/dev/zero"), out), ("/dev/zero",))


@case("config is a folder", 2, "the config file is a folder, not a file")
def _(bench, here, out):
    return Run(build(here, out), (str(here),))


@case("validate --config is /dev/zero", 2, "the config file is a device, not a file", existing=True)
def _(bench, here, out):
    return Run(["validate", str(out), "--config", "/dev/zero"], ("/dev/zero",), keep=(here / "out-validate",))


@case("latency batch size negative (ran as batch 6)", 2, "`validation.latency.batch_sizes.0`",
      "greater than or equal to 1")
def _(bench, here, out):
    return Run(build(bench.config(here, validation={"latency": {**LATENCY, "batch_sizes": [-2]}}), out),
               (str(here / "config.yaml"),))


@case("latency batch size 0", 2, "`validation.latency.batch_sizes.1`", "greater than or equal to 1")
def _(bench, here, out):
    return Run(build(bench.config(here, validation={"latency": {**LATENCY, "batch_sizes": [1, 0]}}), out),
               (str(here / "config.yaml"),))


# ---------------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_clear_line_and_keeps_the_output(case, bench, tmp_path):
    out = tmp_path / "out"
    if case.existing:
        shutil.copytree(bench.built, out)
    run = case.setup(bench, tmp_path, out)
    watched = (out, *run.keep)
    before, result, note = [snapshot(path) for path in watched], None, None
    try:
        result = run_cli(*run.args, **run.popen)
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
        if case.exit == 0:
            assert result.returncode == 0, result.stderr
            note = f"(handled) {run.handled()}"
        else:
            message = error_line(result)
            assert result.returncode == case.exit, result.stderr
            for text in (*case.says, *run.names):
                assert text in message, text
            if case.completes:
                assert json.loads((out / "report.json").read_text())["passed"] is False
                watched, before = watched[1:], before[1:]
            for path, snap in zip(watched, before):  # a previous build unchanged, and no folder where there was none
                assert snapshot(path) == snap, path
    finally:
        if TABLE and result is not None:  # also for a failing case: the table shows what it printed
            _table_row(case, result, note, tmp_path, bench.root)
        if run.after is not None:  # also on failure: it may resume or reap a process the setup started
            run.after(result)
    for path in (out, *run.keep):
        assert leftovers(path) == [], path


def _table_row(case: Case, result: subprocess.CompletedProcess, note: str | None, here: Path, root: Path) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    shown = note or (lines[-1] if lines else "")
    shown = shown.removeprefix("error: ").replace(str(here), "<case>").replace(str(root), "<bench>")
    with open(TABLE, "a") as f:
        f.write(json.dumps({"case": case.name, "exit": result.returncode, "expected": case.exit, "message": shown,
                            "internal_error": "internal error" in result.stderr}) + "\n")


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
