"""Issue 24 (4-6): decisions that know their own noise. A latency comparison gives a ratio with a 95 % interval over
interleaved rounds and `within noise` is a verdict of its own; a task budget narrower than its sampling interval is
the `budget_below_noise` warning with the sample count that would decide it; an fp16 build that ran as bf16 and
misses only its fp16 budget names both fixes, and a `thresholds.bf16` budget judges it as bf16."""

from __future__ import annotations

import numpy as np
import pytest

from edgedeploy import pipeline
from edgedeploy.config import demo_spec_path, load_spec
from edgedeploy.device import cpu_flags
from edgedeploy.tasks import classification
from edgedeploy.validate import latency, notices

from test_validate_gate import make_classifier


SPEC = load_spec(demo_spec_path())


def _timing(batch: int, rounds: list[float]) -> dict:
    return {"batch": batch, "median_ms": float(np.median(rounds)), "round_medians_ms": rounds}


def test_int8_slower_in_every_round_but_noisy_is_within_noise():
    """The issue's case: under load a plain int8 build said "INT8 is slower than float (1.35x)". Slower in every
    round, but by 1 %, 2 % and 200 %: the interval holds 1, so no warning; a steady 30 % is `slower`."""
    floats = [_timing(1, [1.0, 1.0, 1.0])]
    noisy = latency.int8_vs_float([_timing(1, [1.01, 1.02, 3.0])], floats)[0]
    assert noisy["verdict"] == "within noise" and not noisy["slower"]
    assert noisy["ratio_ci95"][0] < 1 < noisy["ratio_ci95"][1]
    steady = latency.int8_vs_float([_timing(1, [1.30, 1.31, 1.29])], floats)[0]
    assert steady["verdict"] == "slower" and steady["slower"] and 1.25 < steady["ratio_ci95"][0] < 1.3
    report = {"target": "openvino", "latency_measurement": {"int8_vs_float": [noisy]}}
    assert notices.int8_slower_than_float(report, SPEC) == []
    report["latency_measurement"]["int8_vs_float"] = [steady]
    [w] = notices.int8_slower_than_float(report, SPEC)
    assert "95% interval" in w["message"]


def test_ratio_interval_and_verdicts():
    assert latency.ratio_verdict(latency.ratio_interval([0.5] * 4, [1.0] * 4)) == "faster"
    within = latency.ratio_interval([0.8, 1.25, 0.9, 1.1], [1.0] * 4)
    assert latency.ratio_verdict(within) == "within noise"
    boot = latency.median_ratio_interval(list(np.linspace(1.9, 2.1, 200)), list(np.linspace(0.9, 1.1, 200)))
    assert 1.8 < boot["ci95"][0] < boot["ratio"] < boot["ci95"][1] < 2.2


def test_top1_intervals_are_binomial_and_paired():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    ref = np.eye(10)[np.where(rng.random(500) < 0.72, labels, (labels + 1) % 10)]
    out = classification.evaluate(ref, ref + 1e-6, labels)
    low, high = out["top1_ci95"]
    assert low < out["top1"] < high and 0.07 < high - low < 0.09  # ±2 points at 72 % on 500 samples
    assert out["top1_drop"] == 0 and out["top1_drop_ci95"] == [-3 / 500, 3 / 500]


def test_a_budget_below_noise_is_a_warning_naming_the_samples_needed():
    report = {"task": {"kind": "classification", "samples": 500, "top1_drop": 0.02, "top1_drop_ci95": [-0.01, 0.05]},
              "checks": [{"name": "top1_drop", "group": "task", "status": "fail", "limit": 0.01, "op": "<="}]}
    [w] = notices.budget_below_noise(report, SPEC)
    assert w["code"] == "budget_below_noise" and "about 4500 samples" in w["message"]
    report["checks"][0]["limit"] = 0.05
    assert notices.budget_below_noise(report, SPEC) == []


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return make_classifier(tmp_path_factory.mktemp("mlp"))


@pytest.mark.slow  # an int8 build with calibration
def test_a_narrow_budget_on_few_samples_says_so_in_a_real_build(mlp, tmp_path):
    """The digits classifier, int8 with a 0.1-point top-1 budget on 200 samples: the interval of its drop is wider
    than that, and the report says so (the closing note's example of a budget below noise)."""
    spec = load_spec(mlp)
    thresholds = {**spec.thresholds, "int8": spec.thresholds.get("int8", None) or type(spec.thresholds["fp16"])(
        max_top1_drop=0.001)}
    spec = spec.model_copy(update={"target": "onnxruntime", "precision": "int8", "thresholds": thresholds,
                                   "calibration": spec.calibration.model_copy(update={"data": mlp.parent / "val.npz"})})
    report = pipeline.build(spec, tmp_path / "out")
    codes = [w["code"] for w in report["warnings"]]
    assert "budget_below_noise" in codes, report["task"]
    assert report["task"]["top1_drop_ci95"][0] <= report["task"]["top1_drop"] <= report["task"]["top1_drop_ci95"][1]


@pytest.mark.slow  # two OpenVINO builds
@pytest.mark.skipif(not {"avx512_bf16", "amx_bf16"} & cpu_flags(),
                    reason="needs a CPU with bf16 (AVX512-BF16 or AMX-BF16): OpenVINO runs fp16 as bf16 only there")
def test_fp16_that_ran_as_bf16_names_both_fixes_and_a_bf16_budget_judges_it(mlp, tmp_path):
    spec = load_spec(mlp)
    fp16 = type(spec.thresholds["fp16"])
    tight = spec.model_copy(update={"target": "openvino", "precision": "fp16",  # bf16 as the plugin picks it on a
                                    "openvino": spec.openvino.model_copy(update={"inference_precision": "bf16"}),
                                    "thresholds": {**spec.thresholds, "fp16": fp16(max_rel_l2=1e-6)}})  # bf16-only CPU
    report = pipeline.build(tight, tmp_path / "fp16")
    assert report["conditions"]["precision_hint_effective"] == "bf16" and not report["passed"]
    [w] = [w for w in report["warnings"] if w["code"] == "fp16_ran_as_bf16"]
    assert "openvino.inference_precision: f16" in w["message"] and "thresholds.bf16" in w["message"]
    judged = tight.model_copy(update={"thresholds": {**tight.thresholds, "bf16": fp16(max_rel_l2=0.1)}})
    report = pipeline.build(judged, tmp_path / "bf16")
    rel = [c for c in report["checks"] if c["name"] == "logits.rel_l2"][0]
    assert rel["budget"] == "bf16" and rel["limit"] == 0.1 and rel["passed"]


def test_the_latency_gate_says_when_it_cannot_decide():
    """Baseline median 1 ms, this run 1.2 ms, the allowed slowdown 15 %: on quiet runs a 20 % regression fails; when
    both runs spread widely the interval straddles 1.15x: the check does not fail on noise, and says it cannot
    decide; a noise guard that allows 2x or more says it could catch nothing smaller."""
    from edgedeploy.config import RegressionSettings
    from edgedeploy.validate import gate

    def run(median: float, spread: float, cov: float = 0.01) -> dict:
        samples = list(np.linspace(median * (1 - spread), median * (1 + spread), 101))
        return {"conditions": {}, "tensors": {}, "task": {},
                "latency": [{"batch": 1, "median_ms": median, "cov": cov, "samples_ms": samples}]}

    [quiet] = gate.baseline_checks(run(1.2, 0.02), run(1.0, 0.02), RegressionSettings(), None)
    assert quiet["status"] == "fail" and not quiet["undecided"] and quiet["ratio_ci95"][0] > 1.15
    [noisy] = gate.baseline_checks(run(1.2, 0.9), run(1.0, 0.9), RegressionSettings(), None)
    assert noisy["passed"] and noisy["undecided"] and noisy["ratio_ci95"][0] < 1.15 < noisy["ratio_ci95"][1]
    report = {"checks": [noisy]}
    assert [w["code"] for w in gate.baseline_warnings(report)] == ["latency_gate_undecided"]
    [blind] = gate.baseline_checks(run(1.2, 0.02, cov=0.5), run(1.0, 0.02, cov=0.5), RegressionSettings(), None)
    assert blind["passed"] and blind["allowed_slowdown"] > 1
    assert [w["code"] for w in gate.baseline_warnings({"checks": [blind]})] == ["latency_gate_blind"]
