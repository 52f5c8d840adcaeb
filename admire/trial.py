"""The trial nouns in one place: what a runner receives and returns, and what the store keeps.

- `TrialSpec`: one trial to run (mixture, fidelity, seed, and the pool row in pool mode).
- `TrialResult`: a runner's answer (metrics, cost in the runner's unit, curve, failure).
- `TrialRecord`: a trial as the store has it (spec, state, metrics, curve); the optimiser's
  history is a list of these, rebuilt from MLflow.
- States: RUNNING (written before the trial starts), COMPLETED, FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from admire.config import Fidelity

RUNNING, COMPLETED, FAILED = "RUNNING", "COMPLETED", "FAILED"
ATTACHED = "attached"
"""The generation step of a trial that was not run by the study but attached to it
(`Study.attach`): an observation it did not pay for."""
OBJECTIVE = "objective"
COST = "cost"


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
    lower token budgets that come for free (proxy training, replayed checkpoints)."""
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Other step metrics to chart (name -> [(tokens seen, value)]), e.g. training loss."""


@dataclass(frozen=True)
class PoolRow:
    """A run the optimiser may choose in pool mode."""

    pool_id: str
    weights: np.ndarray
    fidelity: Fidelity
    run: str | None = None
    """The training run it belongs to, when the pool holds its checkpoints too: a trial of
    this row also yields the run's rows at fewer tokens, for free."""


@dataclass
class TrialRecord:
    """A trial as the store has it."""

    run_id: str
    spec: TrialSpec
    state: str
    step: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    closed: bool = True
    curve: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    """Intermediate observations (tokens seen, metrics), the last being the final result."""
    objective_curve: list[tuple[int, float]] = field(default_factory=list)
    """The objective at each curve point (tokens seen, value), in the objective's direction."""
    retry_of: int | None = None
    """The index of the trial whose failure this trial retries (the first attempt's)."""
    attempt: int = 1
    """1 for a first attempt, n for the (n-1)-th retry of trial `retry_of`."""

    @property
    def objective(self) -> float | None:
        return self.metrics.get(OBJECTIVE)

    @property
    def raw_cost(self) -> float:
        return self.metrics.get(COST + ".raw", 0.0)

    @property
    def attached(self) -> bool:
        """An existing run added by `Study.attach`: it informs the optimiser but is not part
        of the study's budget."""
        return self.step == ATTACHED


def budget_trials(records: list[TrialRecord]) -> int:
    """How many of the records count against `budget.max_trials` (attached runs do not)."""
    return sum(not r.attached for r in records)


def trial_seed(study_seed: int, index: int) -> int:
    """The seed of trial `index`: distinct per trial, reproducible from the study seed."""
    return (study_seed * 1_000_003 + index * 7919 + 1) % (2**31 - 1)
