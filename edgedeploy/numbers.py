"""Figures for people: how every report, table and task section prints a number."""

from __future__ import annotations

from typing import Any


def num(value: Any) -> str:
    """A figure for people: 4 significant digits, scientific below 1e-3; None as a dash."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def interval(ci: list[float] | None) -> str:
    """` (95 % LOW to HIGH)` after a figure with a sampling interval (top-1: Wilson; drops: paired or bootstrap)."""
    return f" (95 % {num(ci[0])} to {num(ci[1])})" if ci else ""


__all__ = ["interval", "num"]
