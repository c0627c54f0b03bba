"""The bad-input matrix's machinery: the tiny models and the shared bench the cases start from, a case's run and
what it must say, and the one test every surface's cases go through (tests/bad_input/test_<surface>.py)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from cli_helpers import error_line, run_cli
from edgedeploy import fileio

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds (~2 min on 2 cores); CI runs it

HW = 16
LATENCY = {"warmup": 1, "iterations": 3, "batch_sizes": [1], "async_requests": 0}
TABLE = os.environ.get("EDGEDEPLOY_BAD_INPUT_TABLE")


def tiny_model(nodes: list, initializers: list, output: str, channels: int, hw: int = HW,
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
    return tiny_model(nodes, [weight], last, 4, domains=tuple(d for _, d in tail if d))


def inverse_model() -> onnx.ModelProto:
    """A com.microsoft Inverse node: ONNX Runtime runs it, OpenVINO has no conversion for it."""
    eye = numpy_helper.from_array(4 * np.eye(4, dtype=np.float32), "eye")
    return tiny_model([helper.make_node("Add", ["images", "eye"], ["a"], name="add0"),
                   helper.make_node("Inverse", ["a"], ["y"], name="inverse0", domain="com.microsoft")],
                  [eye], "y", 3, hw=4, domains=("com.microsoft",))


def scaled_model(factor: float) -> onnx.ModelProto:
    """images × factor × factor: the optimizer folds the two into one constant beyond fp16's range."""
    k = numpy_helper.from_array(np.array(factor, np.float32), "k")
    return tiny_model([helper.make_node("Mul", ["images", "k"], ["a"], name="mul0"),
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
    _bundle: Path | None = None
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
    def bundle(self) -> Path:
        """A bundle of the conv model (fp32, fp16, int8 calibrated on calib0.npy), signed with `signing_key` (by
        ssh-keygen itself: `edgedeploy bundle --sign` has its own case)."""
        if self._bundle is None:
            for name in ("signing_key", "other_key"):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                                str(self.root / name)], check=True)
            public = (self.root / "signing_key.pub").read_text().split()
            (self.root / "allowed_signers").write_text(
                f'ci@fleet namespaces="edgedeploy-bundle" {public[0]} {public[1]}\n')
            self._bundle = self.root / "bundle"
            result = run_cli("bundle", str(self.bundle_config), "--out", str(self._bundle))
            assert result.returncode == 0, result.stderr
            subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(self.root / "signing_key"), "-n",
                            "edgedeploy-bundle", str(self._bundle / "bundle.json")], check=True)
        return self._bundle

    @property
    def bundle_config(self) -> Path:
        return self.config(self.root, name="bundle.yaml", calibration={"data": str(self.root / "calib0.npy")})

    @property
    def int8(self) -> Path:
        """A finished int8 build (Q/DQ by ONNX Runtime, calibrated on calib0.npy) with its calibration cache."""
        if self._int8 is None:
            config = self.config(self.root, name="int8.yaml", calibration={"data": str(self.root / "calib0.npy")})
            self._int8 = self.build(config, self.root / "int8", "--precision", "int8")
        return self._int8


@dataclass
class Run:
    """One command line run: its arguments and what its error line must name (file, tensor, node)."""

    args: list[str]
    names: tuple[str, ...] = ()
    popen: dict = field(default_factory=dict)
    after: Callable[[subprocess.CompletedProcess | None], None] | None = None  # run last, also on failure
    handled: Callable[[], str] | None = None  # exit-0 cases: checks the outcome, returns what the report says
    seen: Callable[[subprocess.CompletedProcess], str] | None = None  # exit-0 cases: checks what it printed
    env: dict[str, str | None] = field(default_factory=dict)  # environment changes for the run (None: unset)
    progress: tuple[str, ...] = ()  # more beginnings of progress lines the error line may follow (`remote`'s)
    keep: tuple[Path, ...] = ()  # paths besides the output folder that must be left as they were
    # what the hostile input would create if it worked: {"code_run" | "outside" | "injection": (paths...)}
    canaries: dict[str, tuple[Path, ...]] = field(default_factory=dict)


@dataclass
class Case:
    name: str
    exit: int  # 2 usage error, 1 failure, 0 handled
    says: tuple[str, ...]  # what went wrong and what to do, as the error line says it
    setup: Callable[[Bench, Path, Path], Run]  # (bench, case folder, output folder) → the run
    existing: bool = False  # the output folder holds a finished build that must survive
    completes: bool = False  # the build ran to its end (a check failed): its folder, report saying why, is written


def registry(cases: list[Case]) -> Callable:
    """The `@case(name, exit, *says)` decorator of one surface's module, registering into its `cases`."""
    def case(name: str, exit: int, *says: str, existing: bool = False, completes: bool = False):
        def register(setup: Callable[[Bench, Path, Path], Run]) -> Callable:
            cases.append(Case(name, exit, says, setup, existing, completes))
            return setup
        return register
    return case


def build(config: Path, out: Path, *flags: str) -> list[str]:
    return ["build", str(config), "--out", str(out), *(flags or ("--target", "onnxruntime"))]


def external_weight_run(bench, here, out, location):
    (here / "secret.bin").write_bytes(bytes(4 * 4 * 27))  # exists, so only the location is refused
    model = bench.model(here / "m", with_external_weight(conv_model(), location))
    return Run(build(bench.config(here, model), out), (str(model), "tensor 'W'", repr(location)))


def checkpoint_config(bench: Bench, here: Path, checkpoint: Path) -> Path:
    return bench.config(here, model={"onnx": None, "factory": "edgedeploy.demo.model:build_demo",
                                     "checkpoint": str(checkpoint)},
                        inputs=[{"name": "images", "shape": ["batch", 3, 64, 64]}], validation={"data": None})


class Planted:
    """A pickle payload that would create a file if unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def int8_run(bench: Bench, here: Path, out: Path, data: Path) -> list[str]:
    return build(bench.config(here, calibration={"data": str(data)}), out, "--target", "onnxruntime",
                 "--precision", "int8")


def _cache_note(out: Path, status: str) -> str:
    """The report's word on the calibration cache, once its paths and the manifest's are checked."""
    cache = json.loads((out / "report.json").read_text())["precision_stage"]["cache"]
    assert cache["status"] == status, cache
    assert Path(cache["dir"]).is_dir() and Path(cache["dir"]).is_relative_to(out)  # in the final folder
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(fileio.sha256_file(out / rel) == digest for rel, digest in manifest["files"].items())
    return f"calibration cache {cache['status']}: {cache['note']}"


def cache_handled(out: Path, status: str, says: str) -> Callable[[], str]:
    """The check of a handled cache fault: the report names the status and why."""
    def handled() -> str:
        note = _cache_note(out, status)
        assert says in note, note
        return note

    return handled


def drop_dac_override() -> None:
    """In the child (preexec): drop root's permission-bypass capabilities from the bounding set, so the exec'd
    command is refused by file permissions like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def file_size_limit(folder: Path) -> tuple[Path, Callable[[], None]]:
    """The largest file under `folder`, and a preexec function limiting file sizes to below it but above every other
    file, so a command rewriting the folder fails at that file's write (EFBIG, SIGXFSZ ignored)."""
    sizes = sorted((p.stat().st_size, p) for p in folder.rglob("*") if p.is_file())
    (second, _), (largest, path) = sizes[-2:]
    limit = (second + largest) // 2

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return path, limit_file_size


def wait_for(proc: subprocess.Popen, text: str, timeout: float = 120) -> str:
    """Read `proc`'s stderr (unbuffered, so nothing waits in a buffer) until it holds `text`; what was read."""
    deadline = time.monotonic() + timeout
    fd, seen = proc.stderr.fileno(), b""
    while text.encode() not in seen:
        ready = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]
        chunk = os.read(fd, 1 << 16) if ready else b""
        if not chunk:  # the command ended, or the time is up
            proc.kill()
            raise AssertionError(f"{text!r} never appeared on stderr: {seen.decode(errors='replace')}")
        seen += chunk
    return seen.decode(errors="replace")


def victim(here: Path) -> Path:
    (here / "victim.txt").write_text("a file the user can write")
    return here / "victim.txt"


def planted_links_removed(out: Path, victim: Path, link: Path) -> Callable[[], str]:
    def handled() -> str:
        assert sorted(p.name for p in victim.iterdir()) == ["thesis.tex"] and not os.path.lexists(link)
        assert json.loads((out / "report.json").read_text())["passed"]
        return f"built; the planted link {link.name} was removed, its target untouched"

    return handled


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


def validation_run(bench: Bench, here: Path, out: Path, data: Path, task: str = "none", **arrays) -> Run:
    if arrays:
        np.savez(data, **arrays)
    return Run(build(bench.config(here, validation={"data": str(data), "task": task}), out), (str(data),))


def zip_member_flipped(path: Path, source: Path) -> None:
    data = bytearray(source.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the first member's data: the zip directory stays readable
    path.write_bytes(bytes(data))


def huge_header(shape: tuple[int, ...]) -> bytes:
    """An .npy that promises `shape` float32 values and holds none of them."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB pixels (and holds none): what a decompression bomb shows first."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def reference_run(out: Path, **changes) -> Run:
    with np.load(out / "reference.npz") as data:
        arrays = {k: data[k] for k in data.files} | changes
    np.savez(out / "reference.npz", **arrays)
    return Run(["validate", str(out)], (str(out / "reference.npz"),), keep=(out.with_name("out-validate"),))


def baseline_run(here: Path, out: Path, change: Callable[[dict], None] | None = None, text: str | None = None) -> Run:
    report = json.loads((out / "report.json").read_text())
    if change is not None:
        change(report)
    (here / "baseline.json").write_text(text if text is not None else json.dumps(report))
    return Run(["validate", str(out), "--baseline", str(here / "baseline.json")], (str(here / "baseline.json"),),
               keep=(here / "out-validate",))


def manifest_run(here: Path, out: Path, change: Callable[[dict], None]) -> Run:
    manifest = json.loads((out / "manifest.json").read_text())
    change(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return Run(["validate", str(out)], (str(out / "manifest.json"),), keep=(here / "out-validate",))


@contextlib.contextmanager
def environment(changes: dict[str, str | None]):
    """os.environ with `changes` (a None value unsets), restored after: the CLI's process inherits it."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


def matrix_test(cases: list[Case]) -> Callable:
    """The matrix's one test, parametrized over a surface's `cases` (each test_<surface>.py binds it)."""
    @pytest.mark.parametrize("case", cases, ids=[c.name for c in cases])
    def test_bad_input_gives_one_clear_line_and_keeps_the_output(case, bench, tmp_path):
        check_case(case, bench, tmp_path)
    return test_bad_input_gives_one_clear_line_and_keeps_the_output


def check_case(case: Case, bench: Bench, tmp_path: Path) -> None:
    """Run one case through the real command line and check its promise (the module docstring of each surface)."""
    out = tmp_path / "out"
    if case.existing:
        shutil.copytree(bench.built, out)
    run = case.setup(bench, tmp_path, out)
    watched = (out, *run.keep)
    before, result, note = [snapshot(path) for path in watched], None, None
    try:
        with environment(run.env):
            result = run_cli(*run.args, **run.popen)
        harms = [kind for kind, paths in run.canaries.items() if any(os.path.lexists(p) for p in paths)]
        assert not harms, f"{harms}: {run.canaries}"
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
        if case.exit == 0:
            assert result.returncode == 0, result.stderr
            note = f"(handled) {run.handled() if run.handled is not None else run.seen(result)}"
        else:
            lines = [line for line in result.stderr.splitlines() if not line.startswith(run.progress or "\0")]
            message = error_line(subprocess.CompletedProcess(result.args, result.returncode, result.stdout,
                                                             "\n".join(lines)))
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
            table_row(case, run, result, note, tmp_path, bench.root)
        if run.after is not None:  # also on failure: it may resume or reap a process the setup started
            run.after(result)
    for path in (out, *run.keep):
        assert leftovers(path) == [], path


def table_row(case: Case, run: Run, result: subprocess.CompletedProcess, note: str | None, here: Path,
              root: Path) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    shown = note or (lines[-1] if lines else "")
    harms = [kind for kind, paths in run.canaries.items() if any(os.path.lexists(p) for p in paths)]
    write_row(case.setup.__module__, case.name, result, case.exit, shown, here, root, harms=harms)


def write_row(module: str, name: str, result: subprocess.CompletedProcess, expected: int, shown: str, here: Path,
              root: Path, harms: list[str] = (), signal_case: bool = False) -> None:
    """One row of tools/bad_input_table.py (the file EDGEDEPLOY_BAD_INPUT_TABLE names); `module` names the surface.
    A signal case is answered when it exited 128 + the signal with one `interrupted; ...` line after its progress."""
    if not TABLE:
        return
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    shown = shown.removeprefix("error: ").replace(str(here), "<case>").replace(str(root), "<bench>")
    answered = bool(result.returncode == expected and lines and lines[-1].startswith("interrupted; ")
                    and not any(line.startswith(("interrupted", "error:", "internal error")) for line in lines[:-1]))
    with open(TABLE, "a") as f:
        f.write(json.dumps({"surface": module.rpartition(".test_")[2], "case": name, "exit": result.returncode,
                            "expected": expected, "message": shown,
                            "internal_error": "internal error" in result.stderr, "harms": list(harms),
                            **({"signal": "answered" if answered else "not answered"} if signal_case else {})})
                + "\n")
