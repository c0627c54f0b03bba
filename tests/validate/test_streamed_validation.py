"""A validation set larger than `validation.tensor_samples`: streamed in batches, full output tensors kept (and
stored in reference.npz) only for the first samples, task results for every sample; `edgedeploy validate` uses the
stored reference task results without PyTorch and refuses data whose content hash is not the build's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgedeploy import fileio, pipeline, revalidate
from edgedeploy.config import demo_spec_path, load_spec
from edgedeploy.errors import UsageError
from edgedeploy.preprocess import load_validation_set
from edgedeploy.validate.gate import load_stored

from conftest import fast

pytestmark = pytest.mark.slow  # a demo build

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "tests" / "baselines" / "demo-openvino-fp32.json"
SAMPLE = 64  # of the demo's 300 validation images


def sampled_spec(**validation):
    spec = fast(load_spec(demo_spec_path()), target="openvino", precision="fp32")
    return spec.model_copy(update={"validation": spec.validation.model_copy(
        update={"tensor_samples": SAMPLE, **validation})})


@pytest.fixture(scope="module")
def sampled_build(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("streamed") / "build"
    return out, pipeline.build(sampled_spec(), out)


def test_the_set_streams_and_only_the_tensor_sample_is_kept():
    data = load_validation_set(sampled_spec())
    assert data.sampled and data.size == 300 and len(data.inputs["images"]) == SAMPLE
    assert sum(len(b["images"]) for b in data.batches(8)) == 300
    assert data.dataset.sha256 == fileio.sha256_file(demo_spec_path().parent / "eval.npz")


def test_reference_keeps_tensors_of_the_sample_and_task_results_of_every_image(sampled_build):
    out, report = sampled_build
    stored = load_stored(out / "reference.npz")
    assert len(stored.inputs["images"]) == SAMPLE and len(stored.outputs["pred"]) == SAMPLE
    assert len(stored.results.items) == 300 and stored.results.info["decoder"] == "yolo-objectness"
    assert stored.dataset.indices == tuple(range(300))
    assert int(stored.targets[:, 0].max()) == 299  # the labels of the whole set
    assert report["tensors"]["pred"]["elements"] == stored.outputs["pred"].size


def test_streamed_map_is_the_in_memory_map(sampled_build):
    """Every image is scored: the same mAP as the committed full-tensor baseline (300 of 300 tensors kept)."""
    baseline = json.loads(BASELINE.read_text())["task"]
    task = sampled_build[1]["task"]
    for key in ("map50", "map50_95", "reference_map50", "map50_vs_reference"):
        assert task[key] == pytest.approx(baseline[key], abs=1e-12), key
    assert round(task["map50"], 8) == 0.93448378


def test_validate_uses_the_stored_reference_without_torch(sampled_build, tmp_path):
    """`edgedeploy validate` in a process where torch cannot be imported: the reference's stored task results and
    tensor sample are what it compares with, over the whole set streamed from the dataset."""
    out = sampled_build[0]
    code = (f"import sys, json; sys.modules['torch'] = None\n"
            f"from edgedeploy import revalidate\n"
            f"r = revalidate.validate_artifact(__import__('pathlib').Path({str(out)!r}), "
            f"out_dir=__import__('pathlib').Path({str(tmp_path / 'report')!r}))\n"
            f"print(json.dumps({{'passed': r['passed'], 'task': r['task'], 'data': r['validation_data'], "
            f"'elements': r['tensors']['pred']['elements'], 'torch': 'torch' in sys.modules and "
            f"sys.modules['torch'] is not None}}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["passed"] and not result["torch"]
    assert "300 samples streamed" in result["data"] and result["elements"] == sampled_build[1]["tensors"]["pred"][
        "elements"]
    assert result["task"]["map50"] == pytest.approx(sampled_build[1]["task"]["map50"], abs=1e-12)
    assert result["task"]["reference_map50"] == sampled_build[1]["task"]["reference_map50"]


def test_validate_refuses_data_with_another_content_hash(sampled_build, tmp_path):
    with np.load(demo_spec_path().parent / "eval.npz") as d:
        images, targets = d["images"].copy(), d["targets"]
    images[200, 0, 0, 0] ^= 1  # one pixel of an image beyond the tensor sample
    np.savez(tmp_path / "other.npz", images=images, targets=targets)
    config = tmp_path / "other.yaml"
    config.write_text(yaml.safe_dump({"validation": {"data": "other.npz"}}))
    with pytest.raises(UsageError) as e:
        revalidate.validate_artifact(sampled_build[0], config=config, out_dir=tmp_path / "r1")
    assert "content hash" in e.value.what and fileio.sha256_file(demo_spec_path().parent / "eval.npz") in e.value.what
    assert "other.npz" in str(e.value.where)

    config.write_text(yaml.safe_dump({"validation": {"data": "missing.npz"}}))
    with pytest.raises(UsageError, match="validation data not found"):
        revalidate.validate_artifact(sampled_build[0], config=config, out_dir=tmp_path / "r2")


def test_validate_refuses_settings_the_stored_results_were_not_made_with(sampled_build, tmp_path):
    config = tmp_path / "thres.yaml"
    config.write_text(yaml.safe_dump({"validation": {"detection": {"conf_thres": 0.2}}}))
    with pytest.raises(UsageError, match="conf_thres: 0.001 then, 0.2 now"):
        revalidate.validate_artifact(sampled_build[0], config=config, out_dir=tmp_path / "r")


def test_coco_set_streamed_predictions_rescore_independently(tmp_path):
    """The demo's eval set as COCO JSON (category ids 11..20, image ids 1..300): the build streams it, writes
    predictions.json in the dataset's ids, and faster-coco-eval on that file and the COCO JSON gives the reported
    mAP; `edgedeploy validate` writes the same predictions."""
    from faster_coco_eval import COCO, COCOeval_faster

    from dataset_helpers import write_coco

    with np.load(demo_spec_path().parent / "eval.npz") as d:
        images, targets = d["images"], d["targets"]
    coco_json = write_coco(tmp_path / "coco", images, targets, [str(i) for i in range(10)],
                           category_ids=list(range(11, 21)))
    out = tmp_path / "build"
    report = pipeline.build(sampled_spec(data=coco_json, format="coco"), out)
    stored = load_stored(out / "reference.npz")
    assert len(stored.outputs["pred"]) == SAMPLE and len(stored.results.items) == 300
    assert list(stored.placement.category_ids) == list(range(11, 21))
    gt = COCO(str(coco_json))
    evaluator = COCOeval_faster(gt, gt.loadRes(str(out / "predictions.json")), iouType="bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert float(evaluator.stats[0]) == pytest.approx(report["task"]["map50_95"], abs=1e-9)
    assert float(evaluator.stats[1]) == pytest.approx(report["task"]["map50"], abs=1e-9)
    assert round(report["task"]["map50"], 8) == 0.93448378
    validated = revalidate.validate_artifact(out, out_dir=tmp_path / "validate")
    assert validated["task"]["map50"] == report["task"]["map50"]
    assert json.loads((tmp_path / "validate" / "predictions.json").read_text()) == json.loads(
        (out / "predictions.json").read_text())


def test_bundle_carries_the_reference_and_names_its_dataset(tmp_path):
    """A bundle of a set larger than its tensor sample: the device build reads the set from `--data` (checked
    against the content hash the bundle names) and validates every image against the bundled reference."""
    from edgedeploy.bundle.build import build_from_bundle
    from edgedeploy.bundle.make import make_bundle

    bundle = tmp_path / "bundle"
    make_bundle(sampled_spec(samples=200), bundle, ["fp32"])
    stored = load_stored(bundle / "reference.npz")
    assert len(stored.outputs["pred"]) == SAMPLE and len(stored.results.items) == 200
    with pytest.raises(UsageError, match="validation.data is not set"):
        build_from_bundle(bundle, tmp_path / "none")
    other = tmp_path / "other.npz"
    with np.load(demo_spec_path().parent / "eval.npz") as d:
        np.savez(other, images=d["images"][::-1], targets=d["targets"])
    with pytest.raises(UsageError, match="content hash"):
        build_from_bundle(bundle, tmp_path / "other", data=other)
    report = build_from_bundle(bundle, tmp_path / "device", data=demo_spec_path().parent / "eval.npz")
    assert report["passed"] and "200 samples streamed" in report["validation_data"]
    assert report["task"]["map50"] == report["task"]["reference_map50"]
    assert (tmp_path / "device" / "predictions.json").is_file()
