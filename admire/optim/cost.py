"""Cost of a trial at each fidelity, in target-run units (one run at the target fidelity = 1).

Before anything is measured, a fidelity costs what the runner declares (a replay table's cost
column) or, failing that, its FLOPs (6 x params x tokens). Measured costs replace the prior
where a fidelity has been run, and calibrate it (by the median measured/prior ratio) where
it has not, so a wall-clock cost learned at small sizes carries to larger ones.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np


class CostModel:
    """Per-fidelity cost estimates from a prior and measured trial costs (raw units)."""

    def __init__(self, prior: Sequence[float], target_index: int) -> None:
        if any(not (p > 0 and math.isfinite(p)) for p in prior):
            raise ValueError(f"cost priors must be positive and finite, got {list(prior)}")
        self.prior = list(prior)
        self.target_index = target_index
        self._measured: list[list[float]] = [[] for _ in prior]

    def observe(self, fidelity_index: int, raw_cost: float) -> None:
        if raw_cost > 0 and math.isfinite(raw_cost):
            self._measured[fidelity_index].append(raw_cost)

    def raw(self) -> np.ndarray:
        """Estimated raw cost of every fidelity."""
        ratios = [
            statistics.mean(m) / p for m, p in zip(self._measured, self.prior, strict=True) if m
        ]
        scale = statistics.median(ratios) if ratios else 1.0
        return np.array(
            [
                statistics.mean(m) if m else scale * p
                for m, p in zip(self._measured, self.prior, strict=True)
            ]
        )

    def relative(self) -> np.ndarray:
        """Estimated cost of every fidelity in target-run units."""
        raw = self.raw()
        return raw / raw[self.target_index]

    def to_units(self, raw_cost: float) -> float:
        """A measured raw cost in target-run units."""
        return raw_cost / float(self.raw()[self.target_index])
