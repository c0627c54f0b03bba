"""ONNX → ONNX passes, one module each (fold_affine, merge_branches, prune, simplify), every change verified
output-equal in ONNX Runtime (verify). `optimize.optimize_model` / `optimize.optimize_file` run them as the stage.

The pass functions share their modules' names, so they are imported from the modules
(`from edgedeploy.graph.fold_affine import fold_affine`), not re-exported here.
"""

from edgedeploy.graph.optimize import OptimizeReport, OptimizeSettings, PassReport, optimize_file, optimize_model
from edgedeploy.graph.prune import prune_outputs
from edgedeploy.graph.verify import compare_models

__all__ = [
    "OptimizeReport",
    "OptimizeSettings",
    "PassReport",
    "compare_models",
    "optimize_file",
    "optimize_model",
    "prune_outputs",
]
