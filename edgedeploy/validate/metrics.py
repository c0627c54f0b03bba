"""Per-output tensor comparison of a backend's outputs against the reference."""

from __future__ import annotations

import numpy as np

_TINY = 1e-30


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | bool]:
    """Error metrics of `candidate` vs `reference`, computed in float64."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shape {candidate.shape} differs from the reference's {reference.shape}")
    ref = reference.astype(np.float64).ravel()
    cand = candidate.astype(np.float64).ravel()
    finite = bool(np.isfinite(cand).all())
    diff = cand - ref
    ref_norm = float(np.linalg.norm(ref))
    err_norm = float(np.linalg.norm(diff))
    cand_norm = float(np.linalg.norm(cand))
    return {
        "max_abs": float(np.abs(diff).max()) if diff.size else 0.0,
        "mean_abs": float(np.abs(diff).mean()) if diff.size else 0.0,
        "rel_l2": err_norm / max(ref_norm, _TINY),
        "cosine": float(ref @ cand) / max(ref_norm * cand_norm, _TINY),
        "snr_db": float(20 * np.log10(max(ref_norm, _TINY) / max(err_norm, _TINY))),
        "finite": finite,
    }


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                    names: list[str]) -> dict[str, dict[str, float | bool]]:
    return {name: compare(reference[name], candidate[name]) for name in names}
