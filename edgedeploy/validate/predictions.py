"""The artifact's detections of every validation image written beside the report (predictions.json, the COCO
results format) so faster-coco-eval, pycocotools or Ultralytics can re-score them: in original image pixels with
the dataset's image and category ids when the data is a dataset, else in model-input pixels with image ids 1..N
and category ids 1..C (the ground truth the report scores against)."""

from __future__ import annotations

from pathlib import Path

from edgedeploy.preprocess import ValidationSet
from edgedeploy.tasks.base import TaskResults
from edgedeploy.tasks.decoders.base import Detections
from edgedeploy.tasks.metrics import coco
from edgedeploy.tasks.metrics.files import write_coco_results

FILE = "predictions.json"


def write_predictions(folder: Path, data: ValidationSet, results: TaskResults | None) -> Path | None:
    """folder/predictions.json for a detection task's results; None (nothing written) for other tasks."""
    if results is None or results.info.get("task") != "detection":
        return None
    detections: list[Detections] = results.items
    placement = data.placement
    classes = 1 + max([int(d.classes.max(initial=-1)) for d in detections] + [(results.info["num_classes"] or 0) - 1])
    if placement is None:
        ids, cats = list(range(1, len(detections) + 1)), list(range(1, classes + 1))
    else:
        ids = [int(i) for i in placement.image_ids]
        cats = ([int(c) for c in placement.category_ids] if placement.category_ids is not None
                else list(range(1, classes + 1)))
        detections = [Detections(placement.transform(i).to_original(d.boxes), d.scores, d.classes,
                                 keypoints=None if d.keypoints is None
                                 else placement.transform(i).keypoints_to_original(d.keypoints))
                      for i, d in enumerate(detections)]
    path = Path(folder) / FILE
    write_coco_results(path, coco.results(detections, ids, cats))
    return path


__all__ = ["FILE", "write_predictions"]
