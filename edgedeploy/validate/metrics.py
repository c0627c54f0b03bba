"""Per-output tensor comparison of a backend's outputs against the reference.

Every metric is computed in float64 over the elements where both tensors are finite; NaN and Inf are counted
separately (``nan_count``, ``inf_count``, ``finite``) and become their own failing check, so one NaN never turns
every other figure into NaN (and report.json stays strict JSON).
"""

from __future__ import annotations

import numpy as np

_TINY = 1e-30
ABS_ERROR_QUANTILES = (0.5, 0.9, 0.99, 0.999, 1.0)


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | bool | int | list]:
    """Error metrics of `candidate` vs `reference`.

    Returns max/mean abs error, relative L2 error ``||c - r|| / ||r||``, cosine similarity, SNR in dB
    (``20·log10(||r|| / ||c - r||)``), the abs error at the quantiles :data:`ABS_ERROR_QUANTILES`, the element count,
    NaN/Inf counts of the candidate (``nan_count``, ``inf_count``, ``finite``) and of the reference
    (``reference_nonfinite``)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shape {candidate.shape} differs from the reference's {reference.shape}")
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cand = np.asarray(candidate, dtype=np.float64).ravel()
    nan_count = int(np.isnan(cand).sum())
    inf_count = int(np.isinf(cand).sum())
    ref_ok = np.isfinite(ref)
    both = ref_ok & np.isfinite(cand)
    ref, cand = ref[both], cand[both]
    diff = cand - ref
    absdiff = np.abs(diff)
    ref_norm = float(np.linalg.norm(ref))
    err_norm = float(np.linalg.norm(diff))
    cand_norm = float(np.linalg.norm(cand))
    if ref_norm == 0.0 and err_norm == 0.0:  # both all-zero: identical
        rel_l2, cosine = 0.0, 1.0
    else:
        rel_l2 = err_norm / max(ref_norm, _TINY)
        cosine = float(ref @ cand) / max(ref_norm * cand_norm, _TINY)
    quantiles = np.quantile(absdiff, ABS_ERROR_QUANTILES).tolist() if absdiff.size else [0.0] * len(ABS_ERROR_QUANTILES)
    return {
        "max_abs": float(absdiff.max()) if absdiff.size else 0.0,
        "mean_abs": float(absdiff.mean()) if absdiff.size else 0.0,
        "rel_l2": rel_l2,
        "cosine": cosine,
        "snr_db": float(20 * np.log10(max(ref_norm, _TINY) / max(err_norm, _TINY))),
        "abs_error_quantiles": [float(q) for q in quantiles],
        "elements": int(reference.size),
        "nan_count": nan_count,
        "inf_count": inf_count,
        "finite": nan_count == 0 and inf_count == 0,
        "reference_nonfinite": int((~ref_ok).sum()),
    }


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                    names: list[str]) -> dict[str, dict]:
    missing = [n for n in names if n not in reference]
    if missing:
        raise ValueError(f"the reference has no output(s) {missing} (has {sorted(reference)})")
    return {name: compare(reference[name], candidate[name]) for name in names}
