"""tools/cuda_selfcheck.py's CPU-checkable parts: its arguments, a clean failure without cuda-python or a GPU, the
static list of runtime calls it checks, and its step logic run against the CPU CUDA stand-in (which is not a GPU
run: the tool's real use is on an NVIDIA GPU; CI runs --api-only against cuda-bindings 12.x and 13.x)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from trt_standin import FLAVOURS, install, surface_versions

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def tool():
    spec = importlib.util.spec_from_file_location("cuda_selfcheck", REPO / "tools" / "cuda_selfcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args, message", [
    (["--size-mb", "0"], "--size-mb 0 is outside 1..4096"),
    (["--iterations", "0"], "--iterations 0 is outside 1..10000"),
])
def test_bad_arguments_are_one_line(tool, capsys, args, message):
    assert tool.main(args) == 2
    assert message in capsys.readouterr().err


def test_without_cuda_python_it_says_what_to_install(tool, monkeypatch, capsys):
    from edgedeploy.backends import trt_cuda

    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails, as on a machine without cuda-python
    monkeypatch.setattr(trt_cuda, "runtime", trt_cuda.runtime.__wrapped__)
    assert tool.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cuda-python is not installed") and "Traceback" not in err


def test_without_a_gpu_it_fails_cleanly_naming_the_call(tool, monkeypatch, capsys):
    model = install(monkeypatch, surface_versions()[-1])
    model.cuda.fail["cudaMallocHost"] = 0  # the first allocation fails, as with no usable device
    assert tool.main(["--size-mb", "1"]) == 1
    err = capsys.readouterr().err
    assert "error: CUDA call cudaMallocHost(1048576) failed" in err and "--api-only" in err
    assert not model.cuda.device and not model.cuda.streams  # what was made is released


def test_it_lists_every_runtime_call_of_the_cuda_layer(tool):
    calls = tool.runtime_calls()
    assert calls["cudaMemcpyAsync"] == {5} and calls["cudaMalloc"] == {1} and calls["cudaStreamCreate"] == {0}
    assert {"cudaMemcpyKind.cudaMemcpyHostToDevice", "cudaError_t.cudaSuccess"} <= tool.runtime_attributes()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_steps_run_against_the_cpu_standin(tool, monkeypatch, tmp_path, capsys, flavour):
    install(monkeypatch, surface_versions()[-1], flavour=flavour)
    out = tmp_path / "run.json"
    assert tool.main(["--size-mb", "1", "--iterations", "3", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "edgedeploy CPU stand-in (no GPU)" in printed  # never mistaken for a GPU run
    result = json.loads(out.read_text())
    assert [s["step"] for s in result["steps"]] == ["import", "device", "allocate", "round trip", "stream handle",
                                                    "events", "timing ×3", "free"]
    assert tool.main(["--api-only"]) == 0
