"""Per-output tensor comparison of a backend's outputs against the reference.

The figures and the NaN rule are edgedeploy.tensor_error's: computed in float64 over the elements where both tensors
are finite; the candidate's NaN and Inf are counted (``nan_count``, ``inf_count``, ``finite``) and become their own
failing check.
"""

from __future__ import annotations

import numpy as np

from edgedeploy.tensor_error import tensor_errors

# the figures report.json records per output (tensor_error's others serve other callers)
REPORTED = ("max_abs", "mean_abs", "rel_l2", "cosine", "snr_db", "abs_error_quantiles", "elements", "nan_count",
            "inf_count", "finite", "reference_nonfinite")


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | bool | int | list]:
    """Error figures of `candidate` vs `reference` as report.json records them (edgedeploy.tensor_error)."""
    errors = tensor_errors(reference, candidate)
    return {k: errors[k] for k in REPORTED}


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                    names: list[str]) -> dict[str, dict]:
    missing = [n for n in names if n not in reference]
    if missing:
        raise ValueError(f"the reference has no output(s) {missing} (has {sorted(reference)})")
    return {name: compare(reference[name], candidate[name]) for name in names}
