"""How far one tensor is from another: the one comparison the graph passes' verification, the precision stage and
the validate stage all use.

The NaN rule: a NaN or ±Inf in the candidate at a position where the reference holds the same value (NaN and NaN,
+Inf and +Inf) matches it; every other position where either tensor is not finite is a mismatch, counted in
``mismatched_nonfinite`` and left out of the figures. The figures are computed in float64 over the positions finite
in both, so one NaN never turns every other figure into NaN (and report.json stays strict JSON). What a mismatch
means is the caller's: a graph pass that makes one is wrong (edgedeploy.graph.verify), a backend's NaN or Inf is
its own failing check (edgedeploy.validate.metrics).
"""

from __future__ import annotations

import numpy as np

TINY = 1e-30
ABS_ERROR_QUANTILES = (0.5, 0.9, 0.99, 0.999, 1.0)


def tensor_errors(reference: np.ndarray, candidate: np.ndarray, *, quantiles: bool = True,
                  ) -> dict[str, float | bool | int | list]:
    """Error figures of `candidate` against `reference` (same shape, else ValueError): max/mean abs error, relative
    L2 error ``||c - r|| / ||r||``, cosine similarity, SNR in dB (``20·log10(||r|| / ||c - r||)``), the largest
    finite |reference| (`ref_max_abs`), the abs error at :data:`ABS_ERROR_QUANTILES` (`quantiles`: skipped by
    callers that compare many times and never show them), the element count, the candidate's NaN/Inf counts
    (``nan_count``, ``inf_count``, ``finite``), the reference's non-finite count (``reference_nonfinite``), and the
    positions whose non-finite values do not match (``mismatched_nonfinite``)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shape {candidate.shape} differs from the reference's {reference.shape}")
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cand = np.asarray(candidate, dtype=np.float64).ravel()
    nan_count = int(np.isnan(cand).sum())
    inf_count = int(np.isinf(cand).sum())
    ref_ok, cand_ok = np.isfinite(ref), np.isfinite(cand)
    both = ref_ok & cand_ok
    matched = ~ref_ok & ((ref == cand) | (np.isnan(ref) & np.isnan(cand)))
    if not both.all():  # (copies of a large output's tensor sample cost hundreds of MB: only when needed)
        ref, cand = ref[both], cand[both]
    ref_norm = float(np.linalg.norm(ref))
    cand_norm = float(np.linalg.norm(cand))
    dot = float(ref @ cand)
    ref_max_abs = float(max(ref.max(), -ref.min())) if ref.size else 0.0
    # the difference in place of the float64 copy of the candidate when there is one (never the caller's array)
    diff = np.subtract(cand, ref, out=cand) if not np.shares_memory(cand, candidate) else cand - ref
    del ref, cand
    err_norm = float(np.linalg.norm(diff))
    absdiff = np.abs(diff, out=diff)
    if ref_norm == 0.0 and err_norm == 0.0:  # both all-zero: identical
        rel_l2, cosine = 0.0, 1.0
    else:
        rel_l2 = err_norm / max(ref_norm, TINY)
        cosine = dot / max(ref_norm * cand_norm, TINY)
    out: dict[str, float | bool | int | list] = {
        "max_abs": float(absdiff.max()) if absdiff.size else 0.0,
        "mean_abs": float(absdiff.mean()) if absdiff.size else 0.0,
        "rel_l2": rel_l2,
        "cosine": cosine,
        "snr_db": float(20 * np.log10(max(ref_norm, TINY) / max(err_norm, TINY))),
        "ref_max_abs": ref_max_abs,
        "elements": int(reference.size),
        "nan_count": nan_count,
        "inf_count": inf_count,
        "finite": nan_count == 0 and inf_count == 0,
        "reference_nonfinite": int((~ref_ok).sum()),
        "mismatched_nonfinite": int((~both & ~matched).sum()),
    }
    if quantiles:
        q = (np.quantile(absdiff, ABS_ERROR_QUANTILES, overwrite_input=True).tolist() if absdiff.size
             else [0.0] * len(ABS_ERROR_QUANTILES))  # absdiff is not read after this
        out["abs_error_quantiles"] = [float(v) for v in q]
    return out


__all__ = ["ABS_ERROR_QUANTILES", "tensor_errors"]
