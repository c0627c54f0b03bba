"""Shared fixtures: the bundled demo spec and small helpers to write configs.

Conventions for every test module (README.md, "Set-up and tests"):

- `@pytest.mark.slow` on a test that builds a whole model through the pipeline, exports a PyTorch model, starts
  several CLI processes, or otherwise runs over ~10 s on 2 cores (`pytestmark = pytest.mark.slow` for a module of
  them). `pytest -m "not slow"` is the quick suite (must stay under 3 minutes on 2 cores); CI runs everything.
- Tests run in 2 processes (pytest-xdist `-n 2 --dist loadfile`, pyproject.toml; `pytest -n 0` runs in one), each
  module's tests in one process, so a module-scoped fixture is built once. A session-cached build
  (precision_helpers.built) is made once per process that needs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from edgedeploy.config import BuildSpec, demo_spec_path, load_spec

DEMO_DIR = demo_spec_path().parent


@pytest.fixture(scope="session", autouse=True)
def private_stage_cache(tmp_path_factory) -> Path:
    """The stage cache (and anything else under $XDG_CACHE_HOME) of this test process and the CLI processes it
    starts lives in a temporary folder, not in the user's ~/.cache: tests neither read results a developer's own
    builds left there nor leave theirs behind."""
    path = tmp_path_factory.mktemp("xdg-cache")
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture
def demo_spec() -> BuildSpec:
    return load_spec(demo_spec_path())


def fast(spec: BuildSpec, **updates) -> BuildSpec:
    """The spec with a short latency run and the given top-level updates (e.g. target, precision)."""
    latency = spec.validation.latency.model_copy(update={"warmup": 2, "iterations": 5})
    validation = spec.validation.model_copy(update={"latency": latency})
    return spec.model_copy(update={"validation": validation, **updates})


@pytest.fixture
def write_config(tmp_path: Path):
    def write(data: dict | str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path

    return write


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory) -> Path:
    """The demo as a bundle (fp32, fp16, int8): 100 validation samples, 32 calibration samples, a short latency run,
    so that building from it on a "device" takes seconds. Made once per test session; tests copy it to change it."""
    from edgedeploy.bundle.make import make_bundle

    spec = fast(load_spec(demo_spec_path()))
    spec = spec.model_copy(update={
        "validation": spec.validation.model_copy(update={"samples": 100}),
        "calibration": spec.calibration.model_copy(update={"subset_size": 32})})
    out = tmp_path_factory.mktemp("bundle") / "demo-bundle"
    make_bundle(spec, out, ["fp32", "fp16", "int8"])
    return out
