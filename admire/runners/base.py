"""What a runner receives (a TrialSpec) and returns (a TrialResult); nothing about BO."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from admire.config import Fidelity


@dataclass(frozen=True)
class TrialRun:
    """The MLflow run a study created for a trial before running it, for runners whose
    trainer logs to it itself (the command runner hands these to the user's command)."""

    run_id: str
    parent_run_id: str
    tracking_uri: str


@dataclass(frozen=True)
class TrialSpec:
    """One trial to run: a mixture at a fidelity, with the seed that makes it reproducible."""

    index: int
    weights: dict[str, float]
    fidelity: Fidelity
    seed: int
    pool_id: str | None = None
    tracking: TrialRun | None = field(default=None, compare=False)
    """Set by the study when it runs the trial; not part of what the trial is."""


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


class TrialTask(Protocol):
    """A trial made ready to run anywhere: picklable plain data whose call runs the trial in
    the calling process (the local runners) or in a Ray worker (the Ray runner). A task never
    raises for a failed trial: it returns a failed TrialResult with the reason."""

    def __call__(self) -> TrialResult: ...


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
        """Run one trial. Failures come back as `failed=True` with a reason, not as raises.
        Runners that train may be called from several threads at once."""
        ...

    def reference(self, weights: dict[str, float], fidelity: Fidelity) -> dict[str, float] | None:
        """The true metrics of a mixture at a fidelity where the runner can tell them without
        charging a trial (replay only): for reporting a recommendation, never for optimising."""
        ...
