"""Cost of a trial at each fidelity, in target-run units (one run at the target fidelity = 1).

Before anything is measured, a fidelity costs what the runner declares (a replay table's cost
column) or, failing that, its FLOPs (6 x params x tokens). Measured costs replace the prior
where a fidelity has been run, and calibrate it where it has not, so a wall-clock cost learned
at small sizes carries to larger ones: measured = overhead + scale x prior, fitted to the
fidelities run so far. The overhead is what every trial pays whatever its size (start-up,
data loading, evaluation); a tiny proxy run is mostly overhead, and a pure ratio (what one
fidelity alone can give) would scale that overhead up with the FLOPs and price an unrun large
fidelity many times too high.
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

    def calibration(self) -> tuple[float, float]:
        """(overhead, scale) of measured = overhead + scale x prior, fitted by least squares
        to the mean measured cost of each fidelity run (weighted by its trials). With one
        fidelity run, or a fit that is not an overhead (negative) or not increasing, the
        overhead is 0 and the scale the median measured/prior ratio."""
        pairs = zip(self._measured, self.prior, strict=True)
        runs = [(p, statistics.mean(m), len(m)) for m, p in pairs if m]
        if not runs:
            return 0.0, 1.0
        fallback = 0.0, statistics.median(c / p for p, c, _ in runs)
        if len(runs) < 2:
            return fallback
        p, c, n = (np.array(v, dtype=float) for v in zip(*runs, strict=True))
        design = np.stack([np.ones_like(p), p], axis=1) * np.sqrt(n)[:, None]
        (overhead, scale), *_ = np.linalg.lstsq(design, c * np.sqrt(n), rcond=None)
        if overhead < 0 or scale <= 0:
            return fallback
        return float(overhead), float(scale)

    def raw(self) -> np.ndarray:
        """Estimated raw cost of every fidelity: its measured mean, or the calibrated prior."""
        overhead, scale = self.calibration()
        return np.array(
            [
                statistics.mean(m) if m else overhead + scale * p
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
