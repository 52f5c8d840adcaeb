"""What a runner receives (a TrialSpec) and returns (a TrialResult); nothing about BO."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from admire.config import Fidelity


@dataclass(frozen=True)
class TrialSpec:
    """One trial to run: a mixture at a fidelity, with the seed that makes it reproducible."""

    index: int
    weights: dict[str, float]
    fidelity: Fidelity
    seed: int
    pool_id: str | None = None


@dataclass
class TrialResult:
    """A runner's answer. `cost` is in the runner's own unit (the study normalises it)."""

    metrics: dict[str, float]
    cost: float
    failed: bool = False
    error: str = ""
    info: dict[str, str] = field(default_factory=dict)
    curve: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    """Metrics measured part-way through the run, as (tokens seen, metrics): observations at
    lower token budgets that come for free (proxy training)."""
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Other step metrics to chart (name -> [(tokens seen, value)]), e.g. training loss."""


@dataclass(frozen=True)
class PoolRow:
    """A run the optimiser may choose in pool mode."""

    pool_id: str
    weights: np.ndarray
    fidelity: Fidelity


class Runner(Protocol):
    """Turns TrialSpecs into TrialResults."""

    def metric_names(self) -> list[str]:
        """Every metric a trial reports."""
        ...

    def pool(self) -> list[PoolRow] | None:
        """The finite set of runs to choose from, or None when any mixture may be proposed."""
        ...

    def expected_cost(self, fidelity: Fidelity) -> float | None:
        """A trial's cost at `fidelity` when it is known in advance, in the runner's unit."""
        ...

    def run(self, spec: TrialSpec) -> TrialResult:
        """Run one trial. Failures come back as `failed=True` with a reason, not as raises."""
        ...

    def reference(self, weights: dict[str, float], fidelity: Fidelity) -> dict[str, float] | None:
        """The true metrics of a mixture at a fidelity where the runner can tell them without
        charging a trial (replay only): for reporting a recommendation, never for optimising."""
        ...
